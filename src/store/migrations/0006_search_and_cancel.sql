-- Operators search tickets by words of their mail (`tickets list --search`): a full-text
-- index of each incoming message's subject, sender and decoded text, keyed by the message's
-- id. Contentless: the words are indexed, not copied, since the raw mail already holds them.
-- No positions or sizes (detail = none, columnsize = 0): a search matches words, never
-- phrases, and ranks nothing, and the index is cheaper to write.
-- Rows of messages stored before this step are indexed by the migration code (decoding the
-- text needs the mail parser).
CREATE VIRTUAL TABLE message_search USING fts5(
    subject, sender, text, content = '', detail = none, columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- An operator may cancel a queued mail (`outbox cancel`): status 'cancelled', never sent.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE outbox_v6 (
    id              INTEGER PRIMARY KEY,
    message         INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    ticket          INTEGER REFERENCES tickets(number),
    queued_at       TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    bounced_at      TEXT,
    bounce_reason   TEXT
);
INSERT INTO outbox_v6 (id, message, ticket, queued_at, envelope_from, recipient, status, attempts,
                       next_attempt_at, last_error, sent_at, bounced_at, bounce_reason)
SELECT id, message, ticket, queued_at, envelope_from, recipient, status, attempts,
       next_attempt_at, last_error, sent_at, bounced_at, bounce_reason
  FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox(recipient, queued_at);
CREATE INDEX outbox_ticket ON outbox(ticket, queued_at, recipient);
