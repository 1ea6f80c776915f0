-- Every event, whole, stored by actor: one actor's events for a day or a month (`trail query
-- actor`, the API, the console, the access log by principal) are one range read on this table's
-- primary key. Before it, actor_index (0007) gave the keys and each event was then a primary-key
-- lookup of events, ordered by time: a busy actor's day touched nearly every granule of that
-- day (at 100 M events, 274 k rows a day), 289 ms p99 (load_tests/bench_query.py). It replaces
-- actor_index, whose key it starts with, as events_by_subject (0011) replaced subject_index.
-- One row per (event, producer, seq), as in events; queries show one row per event_id. Filled by
-- the view for new events, backfilled once, and cut with events by retention.
CREATE TABLE IF NOT EXISTS {db}.events_by_actor
(
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
ORDER BY (actor_id, occurred_at, event_id, producer_id, producer_seq)
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.events_by_actor_mv TO {db}.events_by_actor AS
SELECT event_id, occurred_at, ingested_at, actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
       record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
       source_environment, location_ip, location_site, location_region, target_system, target_dataset,
       target_resource, destination_kind, destination_name, destination_region, outcome, attributes, producer_id,
       producer_seq, producer_prev, hash
FROM {db}.events;

INSERT INTO {db}.events_by_actor
SELECT event_id, occurred_at, ingested_at, actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
       record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
       source_environment, location_ip, location_site, location_region, target_system, target_dataset,
       target_resource, destination_kind, destination_name, destination_region, outcome, attributes, producer_id,
       producer_seq, producer_prev, hash
FROM {db}.events;

DROP VIEW IF EXISTS {db}.actor_index_mv;

DROP TABLE IF EXISTS {db}.actor_index;
