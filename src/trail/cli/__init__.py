"""The ``trail`` command line (DESIGN.md §5).

The command needs the ``server`` install (``pip install 'trail[server]'``); a service that
installed only the SDK gets a one-line explanation instead of a traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    try:
        from trail.cli.main import main as run  # needs click, rich and the server's libraries
    except ImportError as exc:
        print(
            f"trail: error: the trail command needs the server install ({exc.name} is missing): "
            "pip install 'trail[server]'",
            file=sys.stderr,
        )
        sys.exit(2)
    run(argv)
