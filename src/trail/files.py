"""Private files: everything trail writes under its data directory and outbox is its user's alone.

Directories are made 0700 and files 0600 whatever the process umask (the trail holds notice
files with names and addresses, the incident database, spool segments of events not yet
delivered, and keys). Long-running roles also call :func:`private_umask` at start, so files
that libraries create on their own (chDB's parts, SQLite's journals) follow the same rule.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> int:
    """Set the process umask to 077 (new files 0600, new directories 0700); returns the old one."""
    return os.umask(0o077)


def private_dir(path: Path | str) -> Path:
    """Make ``path`` (and missing parents) as directories only its user can enter."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread or process made it first
            d.mkdir(mode=DIR_MODE)
        os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask; chmod is not
    if not missing and p.is_dir() and p.stat().st_mode & 0o077:
        with contextlib.suppress(PermissionError):  # a directory of someone else's: leave it
            os.chmod(p, DIR_MODE)
    return p


def open_private(path: Path | str, flags: int) -> int:
    """``os.open`` with mode 0600 whatever the umask (an existing file is made 0600 too)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty if missing (and its directory), and make it 0600: for files that a
    library opens itself afterwards (an SQLite database; SQLite gives its journals the same mode)."""
    p = Path(path)
    private_dir(p.parent)
    os.close(open_private(p, os.O_WRONLY | os.O_CREAT))
    return p


def write_private(path: Path | str, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (a private temporary file renamed over it)."""
    p = Path(path)
    private_dir(p.parent)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
