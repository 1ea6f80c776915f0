"""The SDK's bounded on-disk spool: order, acknowledgement, bound, torn writes, locking, orphans."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import trail.sdk.spool as spool_module
from trail.errors import SpoolFullError
from trail.sdk.spool import Spool, find_orphans, read_segment

KEY = b"test-svc/1"
MakeSpool = Callable[..., Spool]


@pytest.fixture()
def open_spools() -> Iterator[list[Spool]]:
    spools: list[Spool] = []
    yield spools
    for s in spools:
        if not s._lock_fh.closed:
            s.close()


@pytest.fixture()
def make_spool(open_spools: list[Spool]) -> MakeSpool:
    def make(directory: Path, max_bytes: int = 1 << 20) -> Spool:
        s = Spool(directory, max_bytes)
        open_spools.append(s)
        return s

    return make


def records(n: int, start: int = 0) -> list[bytes]:
    return [b'{"n":%d,"note":"tab\\tin json"}' % i for i in range(start, start + n)]


def oldest_of(s: Spool) -> tuple[Path, list[tuple[bytes, bytes]]]:
    found = s.oldest()
    assert found is not None
    return found


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def test_append_then_oldest_returns_records_in_order(tmp_path: Path, make_spool: MakeSpool) -> None:
    """Records appended in several batches come back from oldest() in order, with their key."""
    s = make_spool(tmp_path / "sp")
    s.append(KEY, records(3))
    s.append(b"other", records(2, start=3))
    path, got = oldest_of(s)
    assert path == segments(tmp_path / "sp")[0]
    assert got == [(KEY, v) for v in records(3)] + [(b"other", v) for v in records(2, start=3)]


def test_size_counts_bytes_on_disk(tmp_path: Path, make_spool: MakeSpool) -> None:
    """size_bytes equals the bytes written to the segment files."""
    s = make_spool(tmp_path / "sp")
    s.append(KEY, records(4))
    assert s.size_bytes == sum(p.stat().st_size for p in segments(tmp_path / "sp"))
    assert not s.is_empty()


def test_empty_spool_has_no_oldest(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A new spool is empty and oldest() returns None."""
    s = make_spool(tmp_path / "sp")
    assert s.is_empty()
    assert s.oldest() is None


def test_ack_deletes_the_segment(tmp_path: Path, make_spool: MakeSpool) -> None:
    """Acknowledging a segment deletes its file and empties the spool."""
    s = make_spool(tmp_path / "sp")
    s.append(KEY, records(3))
    path, _ = oldest_of(s)
    s.ack(path)
    assert not path.exists()
    assert s.is_empty()
    assert s.size_bytes == 0
    assert s.oldest() is None


def test_segments_roll_over_and_replay_oldest_first(
    tmp_path: Path, make_spool: MakeSpool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the segment size a new segment starts, and oldest() returns segments in age order."""
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 64)
    s = make_spool(tmp_path / "sp")
    s.append(KEY, records(3))
    s.append(KEY, records(2, start=3))
    first, second = segments(tmp_path / "sp")
    assert [p.name for p in (first, second)] == ["seg-00000001.log", "seg-00000002.log"]
    path, got = oldest_of(s)
    assert path == first
    assert [v for _, v in got] == records(3)
    s.ack(first)
    path, got = oldest_of(s)
    assert path == second
    assert [v for _, v in got] == records(2, start=3)


def test_full_spool_refuses_and_writes_nothing(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A batch that would pass the bound raises SpoolFullError and nothing of it is written."""
    s = make_spool(tmp_path / "sp", max_bytes=200)
    s.append(KEY, records(2))
    before = segments(tmp_path / "sp")[0].read_bytes()
    size = s.size_bytes
    with pytest.raises(SpoolFullError, match="TRAIL_SPOOL_MAX_BYTES"):
        s.append(KEY, records(5, start=2))
    assert segments(tmp_path / "sp")[0].read_bytes() == before
    assert s.size_bytes == size


def test_full_spool_on_empty_directory_creates_no_segment(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A first batch larger than the bound is refused without creating a segment file."""
    s = make_spool(tmp_path / "sp", max_bytes=10)
    with pytest.raises(SpoolFullError):
        s.append(KEY, records(1))
    assert segments(tmp_path / "sp") == []
    assert s.is_empty()


def test_bound_counts_segments_left_by_an_earlier_run(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A spool reopened on a directory with segments counts them towards the bound."""
    first = make_spool(tmp_path / "sp")
    first.append(KEY, records(3))
    size = first.size_bytes
    first.close()
    again = make_spool(tmp_path / "sp", max_bytes=size + 5)
    assert again.size_bytes == size
    with pytest.raises(SpoolFullError):
        again.append(KEY, records(1))


def test_torn_last_line_is_skipped(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A last record without its newline (a crash mid-write) is skipped; the complete ones remain."""
    s = make_spool(tmp_path / "sp")
    s.append(KEY, records(2))
    path = segments(tmp_path / "sp")[0]
    with open(path, "ab") as fh:
        fh.write(KEY + b'\t{"n":2,"note":"cut sh')
    _, got = oldest_of(s)
    assert [v for _, v in got] == records(2)
    assert list(read_segment(path)) == got


def test_second_spool_on_same_directory_fails(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A directory whose lock is held cannot be opened by a second Spool."""
    make_spool(tmp_path / "sp")
    with pytest.raises(BlockingIOError):
        Spool(tmp_path / "sp", 1 << 20)


def test_lock_is_released_on_close(tmp_path: Path, make_spool: MakeSpool) -> None:
    """After close() another Spool can take the directory and sees its records."""
    first = make_spool(tmp_path / "sp")
    first.append(KEY, records(2))
    first.close()
    second = make_spool(tmp_path / "sp")
    assert [v for _, v in oldest_of(second)[1]] == records(2)


# ---------------------------------------------------------------- orphans


def test_find_orphans_finds_unlocked_directory_with_segments(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A spool directory with segments and no live client is an orphan."""
    left = make_spool(tmp_path / "root" / "crashed")
    left.append(KEY, records(1))
    left.close()
    own = make_spool(tmp_path / "root" / "own")
    assert find_orphans(tmp_path / "root", own.dir) == [tmp_path / "root" / "crashed"]


def test_find_orphans_skips_locked_directory(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A spool directory whose client is alive (lock held) is not an orphan."""
    live = make_spool(tmp_path / "root" / "live")
    live.append(KEY, records(1))
    own = make_spool(tmp_path / "root" / "own")
    assert find_orphans(tmp_path / "root", own.dir) == []


def test_find_orphans_skips_own_and_empty_directories(tmp_path: Path, make_spool: MakeSpool) -> None:
    """The client's own directory and directories without segments are not orphans."""
    empty = make_spool(tmp_path / "root" / "empty")
    empty.close()
    own = make_spool(tmp_path / "root" / "own")
    own.append(KEY, records(1))
    (tmp_path / "root" / "stray-file").write_text("x")
    assert find_orphans(tmp_path / "root", own.dir) == []


def test_find_orphans_on_missing_root(tmp_path: Path) -> None:
    """A spool root that does not exist has no orphans."""
    assert find_orphans(tmp_path / "nowhere", tmp_path / "nowhere" / "own") == []


def test_find_orphans_finds_directory_with_only_an_overflow_journal(tmp_path: Path, make_spool: MakeSpool) -> None:
    """A crashed client's directory holding only an overflow journal is an orphan too."""
    crashed = make_spool(tmp_path / "root" / "crashed")
    (crashed.dir / "overflow.jsonl").write_bytes(b'{"action":"view"}\n')
    crashed.close()
    own = make_spool(tmp_path / "root" / "own")
    assert find_orphans(tmp_path / "root", own.dir) == [tmp_path / "root" / "crashed"]
