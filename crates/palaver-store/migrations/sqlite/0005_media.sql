-- Media uploads and encryption at rest.
--
-- A media row is made when an upload starts, so its id can bind the
-- ciphertext to the row, and is ready once its bytes are stored; only ready
-- media can be attached. Unattached rows (ready or abandoned) are deleted
-- with their objects after a day.
ALTER TABLE media ADD COLUMN ready_at TEXT;
ALTER TABLE media ADD COLUMN thumbnail_width INTEGER;
ALTER TABLE media ADD COLUMN thumbnail_height INTEGER;
ALTER TABLE media ADD COLUMN thumbnail_size_bytes INTEGER;
-- The client's file name, for Content-Disposition: UTF-8 when key_id is
-- NULL, otherwise sealed under key_id like the bytes. It replaces
-- original_filename (plaintext); the plaintext's hash would let anyone with
-- the database confirm a guessed file, so it goes too.
ALTER TABLE media ADD COLUMN filename BLOB;
ALTER TABLE media DROP COLUMN original_filename;
ALTER TABLE media DROP COLUMN sha256;
-- Media uploaded before this migration had no pipeline behind them.
UPDATE media SET ready_at = created_at;
