-- Every event, whole, stored by person: one person's history (a page of the API, the console,
-- `trail query subject`) and the subject report are one range read on this table's primary key.
-- Before it, a person's events were found through subject_index and read from events, one
-- 1,024-row granule per event, wherever in the year it lay: a person with hundreds of events
-- cost hundreds of granule reads (load_tests/bench_query.py). It replaces subject_index (0002),
-- whose key it starts with, and subject_events (0009), which held only what the report shows.
-- One row per (person, event, producer, seq), as events has one per (event, producer, seq);
-- queries show one row per event_id. Filled by the view for new events, backfilled once, and
-- cut with events by retention.
-- The 64-hex columns (references, hashes) and the attributes are compressed with ZSTD: LZ4
-- cannot pack hex text below a byte a character, ZSTD nearly halves it; at 1 M generated events
-- the events table went from 189 MB to 124 MB for 8 % more insert time (load_tests/bench_query.py).
CREATE TABLE IF NOT EXISTS {db}.events_by_subject
(
    subject_ref         String CODEC(ZSTD(1)),
    event_id            UUID,
    occurred_at         DateTime64(6, 'UTC'),
    ingested_at         DateTime64(3, 'UTC'),
    actor_kind          LowCardinality(String),
    actor_id            String,
    actor_role          String,
    actor_department    String,
    action              LowCardinality(String),
    subject_refs        Array(String) CODEC(ZSTD(1)),
    record_count        UInt64,
    data_categories     Array(LowCardinality(String)),
    purpose             String,
    legal_basis         LowCardinality(String),
    consent_ref         String,
    source_service      LowCardinality(String),
    source_host         LowCardinality(String),
    source_environment  LowCardinality(String),
    location_ip         String,
    location_site       String,
    location_region     String,
    target_system       LowCardinality(String),
    target_dataset      String,
    target_resource     String,
    destination_kind    LowCardinality(String),
    destination_name    String,
    destination_region  String,
    outcome             LowCardinality(String),
    attributes          Map(String, String) CODEC(ZSTD(1)),
    producer_id         String,
    producer_seq        UInt64,
    producer_prev       String CODEC(ZSTD(1)),
    hash                String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(occurred_at)
ORDER BY (subject_ref, occurred_at, event_id, producer_id, producer_seq)
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_by_subject_mv TO {db}.events_by_subject AS
SELECT arrayJoin(subject_refs) AS subject_ref, event_id, occurred_at, ingested_at, actor_kind, actor_id, actor_role,
       actor_department, action, subject_refs, record_count, data_categories, purpose, legal_basis, consent_ref,
       source_service, source_host, source_environment, location_ip, location_site, location_region, target_system,
       target_dataset, target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
       producer_id, producer_seq, producer_prev, hash
FROM {db}.events;

INSERT INTO {db}.events_by_subject
SELECT arrayJoin(subject_refs) AS subject_ref, event_id, occurred_at, ingested_at, actor_kind, actor_id, actor_role,
       actor_department, action, subject_refs, record_count, data_categories, purpose, legal_basis, consent_ref,
       source_service, source_host, source_environment, location_ip, location_site, location_region, target_system,
       target_dataset, target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
       producer_id, producer_seq, producer_prev, hash
FROM {db}.events;

ALTER TABLE {db}.events MODIFY COLUMN subject_refs CODEC(ZSTD(1)), MODIFY COLUMN attributes CODEC(ZSTD(1)),
    MODIFY COLUMN producer_prev CODEC(ZSTD(1)), MODIFY COLUMN hash CODEC(ZSTD(1));

DROP VIEW IF EXISTS {db}.subject_events_mv;

DROP TABLE IF EXISTS {db}.subject_events;

DROP VIEW IF EXISTS {db}.subject_index_mv;

DROP TABLE IF EXISTS {db}.subject_index;
