-- Alerts of the streaming detectors (MIIT Art. 13(3); Shenzhen Art. 83) and their review.
-- One logical row per alert_id: the detector's row has version 0; every review inserts the
-- whole alert again with a higher version (milliseconds of the review) and the new status, so
-- a redelivered detection (version 0) never undoes a review. Read with FINAL.
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id          UUID,
    rule              LowCardinality(String),
    severity          LowCardinality(String),
    actor_id          String,
    actor_kind        LowCardinality(String),
    alert_key         String,
    window_start      DateTime64(6, 'UTC'),
    window_end        DateTime64(6, 'UTC'),
    count             UInt64,
    records           UInt64,
    evidence          Array(String),
    articles          Array(String),
    summary           String,
    trigger_event_id  String,
    detected_at       DateTime64(6, 'UTC'),
    status            LowCardinality(String),
    reviewer          String,
    reason            String,
    reviewed_at       DateTime64(6, 'UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;

-- The detector's checkpoints: its window state and the trail.events offsets it covers.
-- A restarted detector loads the newest and re-reads from those offsets, so its windows are
-- exactly what they were; alerts it recomputes on the way are already published and skipped.
CREATE TABLE IF NOT EXISTS {db}.detector_checkpoints
(
    group_id   String,
    saved_at   DateTime64(3, 'UTC'),
    offsets    String,
    state      String
)
ENGINE = MergeTree
ORDER BY (group_id, saved_at)
TTL toDateTime(saved_at) + INTERVAL 2 DAY;
