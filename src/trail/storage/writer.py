"""Writing SDK batches straight into the store, for direct mode (no broker, no sink).

The same acceptance rule as the sink (:func:`trail.events.wire.decode`) is applied to every
record, so direct mode stores exactly what the sink would. A record the sink would
dead-letter is set aside alone, logged with its reason (there is no dead-letter topic in
direct mode), and the rest of its batch is stored; ``record()`` refuses such events first, so
this is the trace of a bug, never of a user's mistake. A store that fails raises
:class:`TransportUnavailable`: the SDK keeps the batch in its spool and writes it later.
"""

from __future__ import annotations

from collections.abc import Callable

from trail.errors import StoreError, TransportUnavailable
from trail.events.wire import Rejected, decode
from trail.logging import get_logger
from trail.storage.store import Store

log = get_logger("trail.storage")


def store_writer(store: Store) -> Callable[[bytes, list[bytes]], None]:
    """A transport function that writes SDK batches straight into the store."""

    def write(_key: bytes, values: list[bytes]) -> None:
        events = []
        for v in values:
            d = decode(v)
            if isinstance(d, Rejected):
                log.error("writer.record_rejected", reason=d.reason, bytes=len(v), internal=True)
                continue
            events.append(d)
        if not events:
            return
        try:
            store.insert_events(events)
        except StoreError as exc:  # keep the batch (the SDK spools it) and write it later
            raise TransportUnavailable(f"the store did not take the batch ({type(exc).__name__})") from None

    return write
