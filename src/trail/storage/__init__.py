"""The ClickHouse store (server or chDB): migrations, writer, queries."""

from trail.storage.store import EVENT_COLUMNS, Gap, Store, open_store, row_to_event

__all__ = ["EVENT_COLUMNS", "Gap", "Store", "open_store", "row_to_event"]
