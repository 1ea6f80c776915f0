-- "Every event of actor A in a time range" is a range read on this table's primary key, then a
-- primary-key lookup of (occurred_at, event_id) in events (partition-pruned by the same range):
-- no bloom-filter scan of the whole events table. Filled by the view for new events and
-- backfilled once from the events already stored.
CREATE TABLE IF NOT EXISTS {db}.actor_index
(
    actor_id     String,
    occurred_at  DateTime64(6, 'UTC'),
    event_id     UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(occurred_at)
ORDER BY (actor_id, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.actor_index_mv TO {db}.actor_index AS
SELECT actor_id, occurred_at, event_id
FROM {db}.events;

INSERT INTO {db}.actor_index (actor_id, occurred_at, event_id)
SELECT actor_id, occurred_at, event_id FROM {db}.events;
