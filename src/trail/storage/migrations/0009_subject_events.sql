-- What the subject report shows of each operation on a person, stored by person: "the report of
-- a person with 10,000 events" is one range read on this table's primary key, where the events
-- table (ordered by time) would have to read every granule of the period those events touch.
-- The hash chain, the other people and the attributes are not copied (the report does not show
-- them; verify and proofs read events). Filled by the view for new events, backfilled once.
CREATE TABLE IF NOT EXISTS {db}.subject_events
(
    subject_ref         String,
    occurred_at         DateTime64(6, 'UTC'),
    event_id            UUID,
    actor_kind          LowCardinality(String),
    actor_id            String,
    actor_role          String,
    actor_department    String,
    action              LowCardinality(String),
    data_categories     Array(LowCardinality(String)),
    purpose             String,
    legal_basis         LowCardinality(String),
    consent_ref         String,
    source_service      LowCardinality(String),
    target_system       LowCardinality(String),
    target_dataset      String,
    target_resource     String,
    destination_kind    LowCardinality(String),
    destination_name    String,
    destination_region  String,
    outcome             LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(occurred_at)
ORDER BY (subject_ref, occurred_at, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.subject_events_mv TO {db}.subject_events AS
SELECT arrayJoin(subject_refs) AS subject_ref, occurred_at, event_id, actor_kind, actor_id, actor_role,
       actor_department, action, data_categories, purpose, legal_basis, consent_ref, source_service, target_system,
       target_dataset, target_resource, destination_kind, destination_name, destination_region, outcome
FROM {db}.events;

INSERT INTO {db}.subject_events
SELECT arrayJoin(subject_refs) AS subject_ref, occurred_at, event_id, actor_kind, actor_id, actor_role,
       actor_department, action, data_categories, purpose, legal_basis, consent_ref, source_service, target_system,
       target_dataset, target_resource, destination_kind, destination_name, destination_region, outcome
FROM {db}.events;
