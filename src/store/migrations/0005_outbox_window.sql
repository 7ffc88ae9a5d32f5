-- The outbox records each mail's ticket and queue time itself: the rate limits count
-- recent mail by address and by ticket with one index range each, instead of visiting
-- every earlier mail's message row (a large row: it holds the raw mail).
CREATE TABLE outbox_v5 (
    id              INTEGER PRIMARY KEY,
    message         INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    ticket          INTEGER REFERENCES tickets(number),
    queued_at       TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    bounced_at      TEXT,
    bounce_reason   TEXT
);
INSERT INTO outbox_v5 (id, message, ticket, queued_at, envelope_from, recipient, status, attempts,
                       next_attempt_at, last_error, sent_at, bounced_at, bounce_reason)
SELECT o.id, o.message, m.ticket, m.received_at, o.envelope_from, o.recipient, o.status, o.attempts,
       o.next_attempt_at, o.last_error, o.sent_at, o.bounced_at, o.bounce_reason
  FROM outbox o JOIN messages m ON m.id = o.message;
DROP TABLE outbox;
ALTER TABLE outbox_v5 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox(recipient, queued_at);
CREATE INDEX outbox_ticket ON outbox(ticket, queued_at, recipient);
