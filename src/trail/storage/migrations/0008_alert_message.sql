-- An alert's summary as a message code and its parameters (JSON: {"code", "params"}), so the
-- review queue and the documents say it in Chinese as well as English. Empty: written before.
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS message String DEFAULT '';
