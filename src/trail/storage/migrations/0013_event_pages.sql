-- The copies by person and by actor, narrowed to what a page reads. events_by_subject (0011) and
-- events_by_actor (0012) held every event as its 32 columns, and a page read all of them:
-- ClickHouse spends about half a millisecond per column and query on planning and opening
-- readers, whatever the rows, so one person's page cost 26 ms where its event ids alone cost 8
-- (load_tests/bench_query.py). Here each event is its key columns, the columns the pages
-- filter on, and the rest of the event as one JSON object (`event`); a page reads six columns.
-- pages_by_subject has one row per (person, event, producer, seq), pages_by_actor one per
-- (event, producer, seq), as events; queries show one row per event_id. Filled by the views for
-- new events (created before the backfill, so nothing stored meanwhile is missed; what both
-- write collapses, as exact redeliveries do), backfilled once, cut with events by retention.
-- They replace events_by_subject and events_by_actor, dropped at the end. The JSON takes ZSTD(1):
-- level 3 was no smaller at 1 M generated events and cost 6 % more insert time. An insert costs
-- about a fifth more than with the whole-column copies (the server writes the JSON twice).
CREATE TABLE IF NOT EXISTS {db}.pages_by_subject
(
    subject_ref         String CODEC(ZSTD(1)),
    occurred_at         DateTime64(6, 'UTC'),
    event_id            UUID,
    producer_id         String,
    producer_seq        UInt64,
    actor_id            String,
    action              LowCardinality(String),
    data_categories     Array(LowCardinality(String)),
    source_service      LowCardinality(String),
    target_system       LowCardinality(String),
    outcome             LowCardinality(String),
    destination_kind    LowCardinality(String),
    event               String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(occurred_at)
ORDER BY (subject_ref, occurred_at, event_id, producer_id, producer_seq)
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE TABLE IF NOT EXISTS {db}.pages_by_actor
(
    actor_id            String,
    occurred_at         DateTime64(6, 'UTC'),
    event_id            UUID,
    producer_id         String,
    producer_seq        UInt64,
    action              LowCardinality(String),
    data_categories     Array(LowCardinality(String)),
    source_service      LowCardinality(String),
    target_system       LowCardinality(String),
    outcome             LowCardinality(String),
    destination_kind    LowCardinality(String),
    event               String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(occurred_at)
ORDER BY (actor_id, occurred_at, event_id, producer_id, producer_seq)
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.pages_by_subject_mv TO {db}.pages_by_subject AS
SELECT subject_ref, occurred_at, event_id, producer_id, producer_seq, actor_id, action, data_categories, source_service,
       target_system, outcome, destination_kind,
       formatRowNoNewline('JSONEachRow', actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
           record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
           source_environment, location_ip, location_site, location_region, target_system, target_dataset,
           target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
           producer_prev, hash) AS event
FROM {db}.events ARRAY JOIN subject_refs AS subject_ref;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.pages_by_actor_mv TO {db}.pages_by_actor AS
SELECT actor_id, occurred_at, event_id, producer_id, producer_seq, action, data_categories, source_service,
       target_system, outcome, destination_kind,
       formatRowNoNewline('JSONEachRow', actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
           record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
           source_environment, location_ip, location_site, location_region, target_system, target_dataset,
           target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
           producer_prev, hash) AS event
FROM {db}.events;

INSERT INTO {db}.pages_by_subject
SELECT subject_ref, occurred_at, event_id, producer_id, producer_seq, actor_id, action, data_categories, source_service,
       target_system, outcome, destination_kind,
       formatRowNoNewline('JSONEachRow', actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
           record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
           source_environment, location_ip, location_site, location_region, target_system, target_dataset,
           target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
           producer_prev, hash) AS event
FROM {db}.events ARRAY JOIN subject_refs AS subject_ref;

INSERT INTO {db}.pages_by_actor
SELECT actor_id, occurred_at, event_id, producer_id, producer_seq, action, data_categories, source_service,
       target_system, outcome, destination_kind,
       formatRowNoNewline('JSONEachRow', actor_kind, actor_id, actor_role, actor_department, action, subject_refs,
           record_count, data_categories, purpose, legal_basis, consent_ref, source_service, source_host,
           source_environment, location_ip, location_site, location_region, target_system, target_dataset,
           target_resource, destination_kind, destination_name, destination_region, outcome, attributes,
           producer_prev, hash) AS event
FROM {db}.events;

DROP VIEW IF EXISTS {db}.events_by_subject_mv;

DROP TABLE IF EXISTS {db}.events_by_subject;

DROP VIEW IF EXISTS {db}.events_by_actor_mv;

DROP TABLE IF EXISTS {db}.events_by_actor;
