-- Smaller compressed blocks for the events table of a store made before 0001 set them: parts
-- written or merged from now on decompress less to read one event. (Granules of 1,024 rows,
-- the larger part of the gain, need a table made anew: see CHANGELOG.)
ALTER TABLE {db}.events MODIFY SETTING min_compress_block_size = 4096, max_compress_block_size = 65536;
