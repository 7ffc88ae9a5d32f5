-- IMAP first sync: UIDs below first_uid were skipped (never touched), UIDs below
-- history_below are imported as history without any automatic answer.
ALTER TABLE mailbox_cursors ADD COLUMN first_uid INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mailbox_cursors ADD COLUMN history_below INTEGER NOT NULL DEFAULT 0;
