-- The identity of the trail.events log a detector checkpoint's offsets belong to (the cluster
-- id, or the detector's configured log id). A checkpoint of another log keeps its window
-- state, but its offsets are not used: the local broker's log starts anew at every start.
-- Empty: written before log ids were recorded.
ALTER TABLE {db}.detector_checkpoints ADD COLUMN IF NOT EXISTS log_id String DEFAULT '';
