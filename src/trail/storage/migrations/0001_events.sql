-- Every delivered audit event, one row per (event, producer, seq).
-- ReplacingMergeTree on the full sorting key collapses exact redeliveries (a sink replaying
-- after a crash). A resend of the same event under a new producer id is a distinct row, kept
-- so that both producers' hash chains stay complete; queries show one row per event_id.
-- Strings are never empty in a valid event, so '' in a column means "absent".
-- Small granules and compressed blocks: a lookup of one event (one person's history is a few
-- primary-key lookups) reads 1,024 rows of each column instead of 8,192, about 3-4x faster at
-- 10 M events for the same disk footprint (load_tests/bench_query.py). Stores created before
-- this setting keep 8,192-row granules (0010 shrinks their compressed blocks).
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id            UUID,
    occurred_at         DateTime64(6, 'UTC'),
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3),
    actor_kind          LowCardinality(String),
    actor_id            String,
    actor_role          String,
    actor_department    String,
    action              LowCardinality(String),
    subject_refs        Array(String),
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
    attributes          Map(String, String),
    producer_id         String,
    producer_seq        UInt64,
    producer_prev       String,
    hash                String,
    INDEX idx_actor actor_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_event event_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_producer producer_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id, producer_id, producer_seq)
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 65536;
