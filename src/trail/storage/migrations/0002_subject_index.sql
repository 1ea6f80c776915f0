-- "Every event about subject X" is a range read on this table's primary key, then a
-- primary-key lookup of (occurred_at, event_id) in events: no scan of events.
CREATE TABLE IF NOT EXISTS {db}.subject_index
(
    subject_ref  String,
    occurred_at  DateTime64(6, 'UTC'),
    event_id     UUID
)
ENGINE = ReplacingMergeTree
ORDER BY (subject_ref, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.subject_index_mv TO {db}.subject_index AS
SELECT arrayJoin(subject_refs) AS subject_ref, occurred_at, event_id
FROM {db}.events;
