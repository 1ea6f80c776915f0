"""Synthetic audit events for tests. Subject ids are synthetic tokens, never real data."""

from __future__ import annotations

from typing import Any


def subject(i: int) -> str:
    return f"SUBJ-TEST-{i:06d}"


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "actor": {"kind": "staff", "id": f"E{1000 + i % 50}", "role": "support"},
        "action": "view",
        "subject_ids": [subject(i % 997), subject((i * 7) % 997)],
        "data_categories": ["name", "phone"],
        "purpose": "answer support ticket",
        "legal_basis": "contract",
        "target": {"system": "crm", "dataset": "customers"},
        "location": {"site": "test-site", "region": "CN-GD"},
        "attributes": {"ticket": f"T-{i}"},
    }
    base.update(overrides)
    return base
