"""Writing SDK batches straight into the store, for direct mode (no broker, no sink).

The same acceptance rule as the sink (:func:`trail.events.wire.decode`) is applied to every
record, so direct mode stores exactly what the sink would.
"""

from __future__ import annotations

from collections.abc import Callable

from trail.errors import TrailError
from trail.events.wire import Rejected, decode
from trail.storage.store import Store


def store_writer(store: Store) -> Callable[[bytes, list[bytes]], None]:
    """A transport function that writes SDK batches straight into the store."""

    def write(_key: bytes, values: list[bytes]) -> None:
        events = []
        for v in values:
            d = decode(v)
            if isinstance(d, Rejected):  # cannot happen for SDK output; refuse loudly if it does
                raise TrailError(f"internal: SDK produced an invalid event ({d.reason})")
            events.append(d)
        store.insert_events(events)

    return write
