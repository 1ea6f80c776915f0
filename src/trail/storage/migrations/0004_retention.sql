-- Signed records of lawful expiry: whole sealed checkpoints removed by `trail retention apply`.
CREATE TABLE IF NOT EXISTS {db}.retention_records
(
    seq         UInt64,
    hash        String,
    created_at  DateTime64(3, 'UTC'),
    record      String
)
ENGINE = MergeTree
ORDER BY seq;
