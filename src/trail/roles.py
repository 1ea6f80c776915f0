"""Running one deployable role (sink, detector, alert sink, incident trigger) as a process.

Every role stops the same way: SIGTERM or SIGINT asks the worker to stop (it finishes what it
holds, commits and returns); an error the role expects becomes a logged line and an exit
status; whatever the role opened is closed on the way out.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from typing import Any


def run_until_signal(
    worker: Any,
    role: str,
    log: Any,
    *,
    errors: Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str]],
    cleanup: Callable[[], None],
) -> int:
    """Run ``worker.run()`` until it returns (0) or raises one of ``errors``: ``(exception
    types, exit status, log event suffix)``, logged as ``<role>.<suffix>``."""

    def on_signal(signum: int, _frame: Any) -> None:
        log.info(f"{role}.signal", signal=signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
        return 0
    except BaseException as exc:
        for kinds, status, event in errors:
            if isinstance(exc, kinds):
                log.error(f"{role}.{event}", reason=str(exc))
                return status
        raise
    finally:
        cleanup()
