"""``trail verify``: prove the stored trail is complete and unaltered, or say what is not.

What is checked, and what each finding means:

- ``modified``: a stored event's content no longer hashes to its hash, or its hash was
  rewritten (the next event's ``prev`` or the checkpoint's tip no longer points at it);
- ``deleted``: a ``producer.seq`` inside a sealed range is missing, and no retention record
  expired it;
- ``inserted``: a row in no chain (its ``prev`` does not link), in conflict with a sealed
  event, or in an expired range; with ``strict``, also any row no checkpoint covers yet;
- ``reordered``: an event moved to another position of its producer's chain (its content
  hashes correctly at another seq);
- ``checkpoint_missing``: a checkpoint is absent from the store (the external log has it),
  or a checkpoint number is skipped;
- ``checkpoint_forged``: a checkpoint's signature does not verify with the public key
  (forged, altered or re-signed with another key), the store's copy differs from the
  external log, or its Merkle root does not match the events it seals;
- ``copy_modified``, ``copy_inserted``, ``copy_missing``: a copy of the events that lookups
  read (``pages_by_subject`` for one person's history and report, ``pages_by_actor`` for one
  actor's) disagrees with ``events``: it shows an event with other content, shows a row no
  stored event makes (an event tied to another person, or one that is not stored at all), or
  lacks a row (a person's or an actor's history would not show that event). Each copy is
  rebuilt from ``events`` by its view's SELECT as trail's migrations define it and compared
  row by row (fingerprints of every column); a difference is read again before it is
  reported, so rows an insert was writing while verify read do not count. Past 10,000 such
  events in one copy, one ``copy_differs`` finding counts the rest; ``copy_differs`` also
  says when a copy is gone or its columns are not those its view makes.

Event hashes are recomputed inside ClickHouse (the canonical JSON rebuilt in SQL, then
SHA-256; the statements are in :mod:`trail.storage.integrity`), so the per-row work runs in
native code; the rare rows it disagrees on (JSON escaping of U+2028/U+2029 and some control
characters differs) are re-checked exactly in Python. Rows stream out ordered by producer and
seq; Merkle roots are built incrementally.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from trail.events.model import event_hash
from trail.integrity.checkpoint import AppendOnlyLog, Checkpoint, RetentionRecord
from trail.integrity.keys import PublicKey
from trail.integrity.merkle import MerkleBuilder
from trail.logging import get_logger
from trail.storage import integrity as sql
from trail.storage.store import Store, row_to_event

log = get_logger("trail.verify")

#: Every kind of finding, as ``Finding.kind`` names them.
FINDING_KINDS: tuple[str, ...] = (
    "modified",
    "deleted",
    "inserted",
    "reordered",
    "checkpoint_missing",
    "checkpoint_forged",
    "copy_modified",
    "copy_inserted",
    "copy_missing",
    "copy_differs",
)

#: A copy's rows per slice of the first pass, which compares a sum per slice and side.
COPY_ROWS_PER_SLICE = 2_000
#: Rows compared one by one in one pass over the slices that differ (their fingerprints are held).
COPY_ROWS_PER_PASS = 4_000_000
#: Differing events of one copy listed one by one; beyond this, one finding counts the rest.
MAX_COPY_FINDINGS = 10_000


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    producer_id: str = ""
    seq: int | None = None
    event_id: str = ""
    checkpoint: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "producer_id": self.producer_id,
            "seq": self.seq,
            "event_id": self.event_id,
            "checkpoint": self.checkpoint,
            "detail": self.detail,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    events_checked: int = 0
    checkpoints_checked: int = 0
    sealed_events: int = 0
    unsealed_events: int = 0
    expired_events: int = 0
    copy_rows_checked: int = 0
    since: int | None = None
    deleted_ranges: list[tuple[str, int, int]] = field(default_factory=list, repr=False)

    @property
    def intact(self) -> bool:
        return not self.findings

    def add(self, kind: str, detail: str, **kw: Any) -> None:
        self.findings.append(Finding(kind, detail, **kw))

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for f in self.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        return {
            "intact": self.intact,
            "events_checked": self.events_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "sealed_events": self.sealed_events,
            "unsealed_events": self.unsealed_events,
            "expired_events": self.expired_events,
            "copy_rows_checked": self.copy_rows_checked,
            "findings": kinds,
            "since": self.since,
        }


@dataclass
class _Row:
    seq: int
    hash: str
    prev: str
    event_id: str
    ok: bool


def load_checkpoints(
    store: Store, public: PublicKey, log_file: AppendOnlyLog | None, report: Report
) -> dict[int, Checkpoint]:
    """The checkpoints to trust (valid signature), reporting missing and forged ones."""
    in_store: dict[int, list[Checkpoint]] = {}
    for record in sql.checkpoint_records(store):
        try:
            cp = Checkpoint.from_record(json.loads(record))
        except (ValueError, KeyError, TypeError):
            report.add("checkpoint_forged", "a row of the checkpoints table is not a readable checkpoint")
            continue
        in_store.setdefault(cp.seq, []).append(cp)
    in_file: dict[int, Checkpoint] = {}
    if log_file is not None:
        for rec in log_file.read():
            if rec.get("type") == "trail.checkpoint/v1":
                try:
                    cp = Checkpoint.from_record(rec)
                except (ValueError, KeyError, TypeError):
                    continue
                in_file.setdefault(cp.seq, cp)
    trusted: dict[int, Checkpoint] = {}
    for seq in sorted(set(in_store) | set(in_file)):
        copies = in_store.get(seq, [])
        distinct = {c.hash + c.signature: c for c in copies}
        file_cp = in_file.get(seq)
        good = [c for c in distinct.values() if c.signature_ok(public)]
        for c in distinct.values():
            if not c.signature_ok(public):
                report.add(
                    "checkpoint_forged",
                    f"signature does not verify with the public key (key id {c.key_id}; expected {public.key_id})",
                    checkpoint=seq,
                )
        if file_cp is not None and not file_cp.signature_ok(public):
            report.add(
                "checkpoint_forged", "the external log's copy does not verify with the public key", checkpoint=seq
            )
            file_cp = None
        if not copies and file_cp is not None:
            report.add("checkpoint_missing", "absent from the store; the external log still has it", checkpoint=seq)
        if file_cp is not None and good and all(c.hash != file_cp.hash for c in good):
            report.add("checkpoint_forged", "the store's copy differs from the external log", checkpoint=seq)
        if log_file is not None and in_file and file_cp is None and good and seq <= max(in_file):
            report.add("checkpoint_forged", "in the store but not in the external log", checkpoint=seq)
        pick = file_cp or (good[0] if good else None)
        if pick is not None:
            trusted[seq] = pick
    if trusted:
        expected_prev = ""
        for seq in range(1, max(trusted) + 1):
            this = trusted.get(seq)
            if this is None:
                if not any(f.kind == "checkpoint_missing" and f.checkpoint == seq for f in report.findings) and not (
                    any(f.kind == "checkpoint_forged" and f.checkpoint == seq for f in report.findings)
                ):
                    report.add("checkpoint_missing", "checkpoint number skipped; neither copy exists", checkpoint=seq)
                expected_prev = ""
                continue
            if expected_prev and this.prev != expected_prev:
                report.add("checkpoint_forged", "does not chain to the previous checkpoint", checkpoint=seq)
            expected_prev = this.hash
    report.checkpoints_checked = len(trusted)
    return trusted


def load_retention(store: Store, public: PublicKey, report: Report) -> set[int]:
    """Checkpoint numbers lawfully expired by signed retention records."""
    expired: set[int] = set()
    for record in sql.retention_records(store):
        try:
            rec = RetentionRecord.from_record(json.loads(record))
        except (ValueError, KeyError, TypeError):
            report.add("checkpoint_forged", "a retention record is not readable")
            continue
        if not rec.signature_ok(public):
            report.add("checkpoint_forged", f"retention record {rec.seq} does not verify with the public key")
            continue
        expired.update(int(c["seq"]) for c in rec.checkpoints)
    return expired


class Verifier:
    def __init__(
        self,
        store: Store,
        public: PublicKey,
        log_file: AppendOnlyLog | None = None,
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
        rows_per_slice: int = COPY_ROWS_PER_SLICE,
        rows_per_pass: int = COPY_ROWS_PER_PASS,
        max_copy_findings: int = MAX_COPY_FINDINGS,
    ) -> None:
        self.store = store
        self.public = public
        self.log_file = log_file
        self.strict = strict
        self.progress = progress
        self.rows_per_slice = rows_per_slice
        self.rows_per_pass = rows_per_pass
        self.max_copy_findings = max_copy_findings

    def run(self, since: int | None = None) -> Report:
        report = Report(since=since)
        checkpoints = load_checkpoints(self.store, self.public, self.log_file, report)
        expired = load_retention(self.store, self.public, report)
        # sealed[pid] = sorted list of (first, last, cp_seq, tip)
        sealed: dict[str, list[tuple[int, int, int, str]]] = {}
        for cp in checkpoints.values():
            for r in cp.ranges:
                sealed.setdefault(r.producer, []).append((r.first, r.last, cp.seq, r.tip))
        for ranges in sealed.values():
            ranges.sort()
        report.expired_events = sum(checkpoints[s].count for s in expired if s in checkpoints)
        active = {s for s in checkpoints if s not in expired and (since is None or s >= since)}
        builders = {s: MerkleBuilder() for s in active}
        source = sql.ALL_EVENTS if since is None else self._scope(sealed, since)
        try:
            bad = self._mismatches(source, report)
            for pid, rows in self._stream(source, report, bad):
                self._check_producer(pid, rows, sealed.get(pid, []), active, expired, since, builders, report)
            copy_findings = Report()
            for copy in sql.event_copies():
                self._check_copy(copy, source, copy_findings)
        finally:
            source.drop(self.store)
        touched = {f.producer_id for f in report.findings if f.producer_id}
        for seq in sorted(active):
            cp = checkpoints[seq]
            if any(r.producer in touched for r in cp.ranges):
                continue  # the event findings already say what changed under this checkpoint
            b = builders[seq]
            if b.count != cp.count:
                report.add("checkpoint_forged", f"seals {cp.count} events but {b.count} were found", checkpoint=seq)
            elif b.root() != cp.root:
                report.add("checkpoint_forged", "Merkle root does not match the events it seals", checkpoint=seq)
        # An event whose stored row was changed, removed or added is already named above; its
        # copies differ from it as a matter of course (they still hold what was first stored).
        named = {f.event_id for f in report.findings if f.event_id}
        for f in copy_findings.findings:
            gone = any(p == f.producer_id and a <= (f.seq or 0) <= b for p, a, b in report.deleted_ranges)
            if f.event_id not in named and not gone:
                report.findings.append(f)
        report.copy_rows_checked = copy_findings.copy_rows_checked
        return report

    def _check_copy(self, copy: sql.EventCopy, source: sql.ScanSource, report: Report) -> None:
        """Compare one copy with what its view makes of ``events``: sums of keyed fingerprints per
        slice of the events in one pass, then, in the slices that differ, row by row; what differs
        is read a second time and reported only if it still does."""
        scan = sql.CopyScan.of(self.store, copy, (secrets.randbits(64), secrets.randbits(64)))
        if isinstance(scan, str):
            report.add("copy_differs", f"{scan}: it cannot be compared, and lookups through it are not to be trusted")
            return
        started = time.monotonic()
        size = sql.copy_rows(self.store, scan)
        slices = max(1, size // self.rows_per_slice)
        differing, compared = sql.copy_digests(self.store, scan, source, slices)
        report.copy_rows_checked += compared
        log.info(
            "verify.copy_compared",
            table=copy.table,
            rows=compared,
            slices=slices,
            slices_differing=len(differing),
            seconds=round(time.monotonic() - started, 1),
        )
        suspects: set[str] = set()
        chunk: list[int] = []
        rows = 0
        for bucket, (copy_n, made_n) in sorted(differing.items()):
            chunk.append(bucket)
            rows += copy_n + made_n
            if rows >= self.rows_per_pass:
                suspects.update(sql.copy_mismatch_ids(self.store, scan, source, chunk, slices))
                chunk, rows = [], 0
        if chunk:
            suspects.update(sql.copy_mismatch_ids(self.store, scan, source, chunk, slices))
        ordered = sorted(suspects)
        listed = ordered[: self.max_copy_findings]
        by_event: dict[tuple[str, str, int], int] = {}
        for start in range(0, len(listed), 5_000):
            for side, event_id, pid, seq in sql.copy_mismatches(
                self.store, scan, source, listed[start : start + 5_000]
            ):
                by_event[(pid, event_id, seq)] = by_event.get((pid, event_id, seq), 0) | side
        for (pid, event_id, seq), sides in sorted(by_event.items()):
            if sides == 3:
                kind, detail = "copy_modified", f"{copy.table} shows this event with content that events does not hold"
            elif sides == 1:
                kind = "copy_inserted"
                detail = (
                    f"{copy.table} holds a row of this event that events does not make "
                    "(tied to another person, or no such event is stored)"
                )
            else:
                kind = "copy_missing"
                detail = f"{copy.table} lacks a row of this stored event: lookups through it would not show it"
            report.add(kind, detail, producer_id=pid, seq=seq, event_id=event_id)
        if len(ordered) > len(listed):
            report.add(
                "copy_differs",
                f"{len(ordered) - len(listed)} more events of {copy.table} differ from events (not listed; "
                f"the first {len(listed)} are)",
            )

    def _scope(self, sealed: dict[str, list[tuple[int, int, int, str]]], since: int) -> sql.ScanSource:
        """For ``--since``: the rows of ranges sealed from checkpoint ``since`` on (and the row before
        each, to check the link), plus producers no checkpoint covers yet."""
        from_seq = {}
        for pid, ranges in sealed.items():
            firsts = [first for first, _, cp, _ in ranges if cp >= since]
            if firsts:
                from_seq[pid] = max(1, min(firsts) - 1)
        return sql.scoped_source(self.store, from_seq, list(sealed))

    def _mismatches(self, source: sql.ScanSource, report: Report) -> set[tuple[str, int, str]]:
        """Pass 1, in SQL: rows whose content does not hash to their hash; re-checked exactly."""
        rows = sql.hash_mismatches(self.store, source)
        return self._classify_mismatches([(p, _Row(s, h, "", e, False)) for p, s, e, h in rows], report)

    def _stream(
        self, source: sql.ScanSource, report: Report, bad: set[tuple[str, int, str]]
    ) -> Iterator[tuple[str, list[_Row]]]:
        """Pass 2: every distinct row, ordered by producer and seq."""
        current: str | None = None
        rows: list[_Row] = []
        n = 0
        for block in sql.chain_rows(self.store, source):
            for pid, seq, h, prev, eid in block:
                if pid != current:
                    if current is not None:
                        yield current, rows
                    current, rows = pid, []
                rows.append(_Row(int(seq), h, prev, eid, (pid, int(seq), eid) not in bad))
                n += 1
            report.events_checked = n
            if self.progress:
                self.progress(n)
        if current is not None:
            yield current, rows

    def _check_producer(
        self,
        pid: str,
        rows: list[_Row],
        ranges: list[tuple[int, int, int, str]],
        active: set[int],
        expired: set[int],
        since: int | None,
        builders: dict[int, MerkleBuilder],
        report: Report,
    ) -> None:
        by_seq: dict[int, list[_Row]] = {}
        for r in rows:
            by_seq.setdefault(r.seq, []).append(r)
        chosen: dict[int, _Row] = {}
        for seq, cands in by_seq.items():
            if len(cands) == 1:
                chosen[seq] = cands[0]
                continue
            # Several different rows claim this position: keep the one that chains, flag the others.
            prev_row = by_seq.get(seq - 1, [None])[0]
            next_rows = by_seq.get(seq + 1, [])

            def score(
                c: _Row, prev_row: _Row | None = prev_row, next_rows: list[_Row] = next_rows, at: int = seq
            ) -> int:
                s = int(c.ok)
                s += int(prev_row is not None and c.prev == prev_row.hash) + int(at == 1 and c.prev == "")
                s += int(any(nr.prev == c.hash for nr in next_rows))
                return s

            best = max(cands, key=score)
            chosen[seq] = best
            for c in cands:
                if c is not best:
                    report.add(
                        "inserted",
                        "a second, different event claims this position of the chain",
                        producer_id=pid,
                        seq=seq,
                        event_id=c.event_id,
                    )
        tip_seq = 0
        covered: dict[int, tuple[int, str]] = {}  # seq -> (checkpoint, tip hash if the range ends here)
        for first, last, cp_seq, tip in ranges:
            for s in range(first, last + 1):
                covered[s] = (cp_seq, tip if s == last else "")
            tip_seq = max(tip_seq, last)
        # deletions and Merkle leaves, per sealed range
        for first, last, cp_seq, tip in ranges:
            if cp_seq in expired:
                for s in range(first, last + 1):
                    if s in chosen:
                        report.add(
                            "inserted",
                            "an event in a range that retention expired",
                            producer_id=pid,
                            seq=s,
                            event_id=chosen[s].event_id,
                            checkpoint=cp_seq,
                        )
                continue
            if cp_seq not in active:
                continue
            missing_start = None
            for s in range(first, last + 1):
                row = chosen.get(s)
                if row is None:
                    if missing_start is None:
                        missing_start = s
                    continue
                if missing_start is not None:
                    _deleted(report, pid, missing_start, s - 1, cp_seq)
                    missing_start = None
                builders[cp_seq].add(row.hash)
                report.sealed_events += 1
            if missing_start is not None:
                _deleted(report, pid, missing_start, last, cp_seq)
            tip_row = chosen.get(last)
            if tip_row is not None and tip_row.ok and tip_row.hash != tip:
                report.add(
                    "modified",
                    "hash rewritten: the checkpoint's tip for this producer names another hash",
                    producer_id=pid,
                    seq=last,
                    event_id=tip_row.event_id,
                    checkpoint=cp_seq,
                )
        # chain links and unsealed rows
        for seq in sorted(chosen):
            row = chosen[seq]
            in_scope = since is None or (seq in covered and covered[seq][0] >= since) or seq > tip_seq
            if not in_scope:
                continue
            if seq > tip_seq:
                report.unsealed_events += 1
            prev_row = chosen.get(seq - 1)
            links = (seq == 1 and row.prev == "") or (prev_row is not None and row.prev == prev_row.hash)
            if prev_row is None and seq > 1 and seq - 1 not in covered and seq - 1 <= tip_seq:
                links = True  # its predecessor expired with retention
            if not links and row.ok:
                if prev_row is not None and prev_row.ok and seq - 1 > tip_seq:
                    report.add(
                        "inserted",
                        "does not link to the previous event of its producer",
                        producer_id=pid,
                        seq=seq,
                        event_id=row.event_id,
                    )
                elif prev_row is not None and prev_row.ok and (seq - 1) in covered and not _is_tip(covered, seq - 1):
                    report.add(
                        "modified",
                        "hash rewritten: the next event's prev no longer points at it",
                        producer_id=pid,
                        seq=seq - 1,
                        event_id=prev_row.event_id,
                        checkpoint=covered[seq - 1][0],
                    )
                elif prev_row is None and seq > tip_seq and seq != 1:
                    report.add(
                        "inserted",
                        "no predecessor in its producer's chain",
                        producer_id=pid,
                        seq=seq,
                        event_id=row.event_id,
                    )
            if seq > tip_seq and self.strict:
                report.add(
                    "inserted",
                    "not covered by any checkpoint (strict mode)",
                    producer_id=pid,
                    seq=seq,
                    event_id=row.event_id,
                )

    def _classify_mismatches(self, mismatched: list[tuple[str, _Row]], report: Report) -> set[tuple[str, int, str]]:
        """Rows whose content no longer hashes to their hash: modified, or moved (reordered)."""
        bad: set[tuple[str, int, str]] = set()
        if not mismatched:
            return bad
        ids = [r.event_id for _, r in mismatched]
        full: dict[tuple[str, str, int], dict[str, Any]] = {}
        for row in sql.rows_by_event_ids(self.store, ids):
            full[(row["producer_id"], row["event_id"], int(row["producer_seq"]))] = row
        by_producer: dict[str, list[_Row]] = {}
        for pid, r in mismatched:
            by_producer.setdefault(pid, []).append(r)
        for pid, rows in by_producer.items():
            seqs = [r.seq for r in rows]
            for r in rows:
                stored = full.get((pid, r.event_id, r.seq))
                if stored is None:
                    continue
                ev = row_to_event(stored)
                body = {k: v for k, v in ev.items() if k != "hash"}
                if event_hash(body) == r.hash:
                    continue  # SQL escaping differed from Python's (U+2028 and the like): intact
                bad.add((pid, r.seq, r.event_id))
                moved_from = None
                for other in seqs:
                    if other == r.seq:
                        continue
                    body["producer"] = dict(body["producer"], seq=other)
                    if event_hash(body) == r.hash:
                        moved_from = other
                        break
                if moved_from is not None:
                    report.add(
                        "reordered",
                        f"moved from position {moved_from} to {r.seq} of its producer's chain",
                        producer_id=pid,
                        seq=r.seq,
                        event_id=r.event_id,
                    )
                else:
                    report.add(
                        "modified",
                        "content no longer matches its hash",
                        producer_id=pid,
                        seq=r.seq,
                        event_id=r.event_id,
                    )
        return bad


def _is_tip(covered: dict[int, tuple[int, str]], seq: int) -> bool:
    return bool(covered.get(seq, (0, ""))[1])


def _deleted(report: Report, pid: str, first: int, last: int, cp_seq: int) -> None:
    report.deleted_ranges.append((pid, first, last))
    what = f"seq {first}" if first == last else f"seq {first}..{last} ({last - first + 1} events)"
    report.add("deleted", f"{what} sealed but missing from the store", producer_id=pid, seq=first, checkpoint=cp_seq)
