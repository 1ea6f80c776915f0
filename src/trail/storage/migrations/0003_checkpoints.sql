-- Signed checkpoints (copies; the append-only file and topic outside the store are the others).
CREATE TABLE IF NOT EXISTS {db}.checkpoints
(
    seq         UInt64,
    hash        String,
    prev        String,
    created_at  DateTime64(3, 'UTC'),
    count       UInt64,
    root        String,
    key_id      String,
    signature   String,
    record      String
)
ENGINE = MergeTree
ORDER BY seq;

-- One row per producer range a checkpoint seals: tips per producer are one GROUP BY away.
CREATE TABLE IF NOT EXISTS {db}.checkpoint_ranges
(
    checkpoint_seq  UInt64,
    producer_id     String,
    first_seq       UInt64,
    last_seq        UInt64,
    tip_hash        String
)
ENGINE = MergeTree
ORDER BY (producer_id, first_seq);
