#!/usr/bin/env python3
"""An example contact resolver for trail's notices to affected people — adapt it.

trail never stores contact details: it knows each person only by *subject ref*, the keyed
HMAC-SHA256 of their id (64 lowercase hex characters) that trail's SDK computes with
``TRAIL_SUBJECT_KEY``. When an incident's notices go out, trail asks the organisation's
resolver for the contacts of a chunk of refs (at most 500 at a time).

A real resolver looks the refs up in the organisation's customer database: keep (or build
on the fly) a column with ``HMAC-SHA256(TRAIL_SUBJECT_KEY, customer_id)`` beside each
customer, then ``SELECT email, phone, name, language FROM customers WHERE subject_ref = ANY(%s)``.
Leave out refs you cannot find: trail records them as ``no contact``. Never print contact
details to stderr or logs.

This one invents a *fake*, deterministic contact from the ref instead, at ``example.invalid``
(a domain that can never receive mail). Refs starting with ``0000`` are "unknown" to show
how an unresolvable ref is simply left out.

Use it either way:

- in-process: ``TRAIL_CONTACT_RESOLVER=/path/to/examples/contact_resolver.py:ExampleResolver``
  (any class or factory taking no arguments whose result has ``resolve(refs)``, or an
  installed one: ``package.module:attr``, or an entry point in group
  ``trail.contact_resolvers``: ``entrypoint:NAME``);
- as a program: ``TRAIL_CONTACT_RESOLVER="command:python3 /path/to/examples/contact_resolver.py"``.
  It reads JSON lines ``{"subject_ref": "..."}`` on stdin and writes one JSON line
  ``{"subject_ref", "email", "phone", "name", "language"}`` per ref it knows, then exits 0.
  Any language (a database client, a shell script) can speak this.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

UNKNOWN_PREFIX = "0000"


def fake_contact(ref: str) -> dict[str, Any] | None:
    """The made-up contact of a ref, or None for an "unknown" one (a real resolver queries a database)."""
    if ref.startswith(UNKNOWN_PREFIX):
        return None
    number = int(ref[:12], 16)
    return {
        "subject_ref": ref,
        "email": f"person-{ref[:12]}@example.invalid",
        "phone": f"+86139{number % 10**8:08d}",
        "name": f"Test Person {ref[:6].upper()}",
        "language": "en" if int(ref[-1], 16) % 2 else "zh",
    }


class ExampleResolver:
    """The in-process form: trail calls ``ExampleResolver()`` once, then ``resolve`` per chunk."""

    def resolve(self, refs: Sequence[str]) -> Mapping[str, Any]:
        from trail.notices import Contact

        out = {}
        for ref in refs:
            found = fake_contact(ref)
            if found is not None:
                out[ref] = Contact(**found)
        return out


def main() -> int:
    """The command form: JSON lines in, JSON lines out."""
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            ref = json.loads(line)["subject_ref"]
        except (ValueError, KeyError, TypeError):
            print(f"contact_resolver: input line {number} is not {{'subject_ref': ...}}", file=sys.stderr)
            return 2
        found = fake_contact(ref)
        if found is not None:
            sys.stdout.write(json.dumps(found, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
