"""Reading a whole topic to its end (the detector's start-up, the alert review)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from trail.errors import TrailError


def read_to_end(
    bootstrap: str, topic: str, timeout_s: float = 60.0, *, options: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Every record of ``topic`` up to its end as first seen, partition by partition in offset
    order. Raises TrailError when the end is not reached within ``timeout_s``.

    The end of a partition is the larger of its listed end offset and the high watermark of
    its first fetch answer: some brokers (the local Tansu broker) list the base offset of the
    last record batch plus one, short of the end when that batch holds several records."""
    from kafka import KafkaConsumer, TopicPartition

    from trail.ingest.kafka import security_options

    reader = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        bootstrap_timeout_ms=10_000,
        **security_options(options or {}),
    )
    try:
        parts = reader.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = reader.end_offsets(tps)
        settled: set[Any] = set()
        deadline = time.monotonic() + timeout_s
        while any(tp not in settled or reader.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TrailError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for recs in reader.poll(timeout_ms=200).values():
                yield from recs
            for tp in tps:
                high = reader.highwater(tp)
                if tp not in settled and high is not None:
                    ends[tp] = max(ends[tp], high)
                    settled.add(tp)
    finally:
        reader.close()
