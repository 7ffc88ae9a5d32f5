-- maildesk schema: the canonical shape of a current database.
--
-- A new database is created from this file and stamped with the latest schema version
-- (PRAGMA user_version). An older database is brought up to date by the numbered steps in
-- src/store/migrations/; a test checks that both roads end in the same schema.
-- Times are UTC, RFC 3339 text. Raw message bytes are kept forever: nothing is dropped.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    -- the provider's own customer reference; imports upsert on it
    reference     TEXT NOT NULL UNIQUE,
    -- the registered address: the only place support replies ever go (normalised lower case)
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    language      TEXT NOT NULL DEFAULT 'en',
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    -- false when the customer file is known to hold invalid details (abuse policy)
    details_valid INTEGER NOT NULL DEFAULT 1 CHECK (details_valid IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE account_resources (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('domain', 'ip', 'cidr')),
    value      TEXT NOT NULL,
    UNIQUE (kind, value)
);
CREATE INDEX account_resources_account ON account_resources(account_id);

CREATE TABLE staff (
    id    INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE tickets (
    number       INTEGER PRIMARY KEY,
    -- NULL for mail from an unregistered sender; then `requester` says who wrote
    account_id   INTEGER REFERENCES accounts(id),
    requester    TEXT NOT NULL,
    mailbox_role TEXT NOT NULL CHECK (mailbox_role IN ('support', 'abuse')),
    subject      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'open', 'waiting', 'resolved', 'closed')),
    priority     TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    -- set when a person must look (malformed mail, abuse report...); the reason says why
    needs_staff  INTEGER NOT NULL DEFAULT 0 CHECK (needs_staff IN (0, 1)),
    flag_reason  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    -- set by rules
    category     TEXT,
    queue        TEXT,
    -- an abuse case: its category and severity
    case_category TEXT,
    case_severity TEXT CHECK (case_severity IN ('low', 'normal', 'high', 'critical')),
    incident_id  INTEGER REFERENCES incidents(id),
    -- kept, never answered
    quarantined  INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1)),
    -- a change waiting for confirmation from the registered address: what it is
    confirmation TEXT
);

CREATE TABLE ticket_tags (
    ticket INTEGER NOT NULL REFERENCES tickets(number),
    tag    TEXT NOT NULL,
    PRIMARY KEY (ticket, tag)
) WITHOUT ROWID;

-- An outage or other event that affects many accounts; tickets link to it.
CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    impact      TEXT,
    opened_at   TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX tickets_status ON tickets(status);
CREATE INDEX tickets_account ON tickets(account_id);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    -- configured mailbox name for incoming mail; 'outbox' for ours
    mailbox     TEXT NOT NULL,
    -- where the source keeps it (Maildir unique name, IMAP UID), for the audit trail
    source_key  TEXT,
    message_id  TEXT,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    raw         BLOB NOT NULL,
    from_addr   TEXT,
    subject     TEXT NOT NULL DEFAULT '',
    ticket      INTEGER REFERENCES tickets(number),
    -- why no automatic answer may go to it (auto-reply, bounce, list...), if so
    automated   TEXT,
    malformed   TEXT,
    received_at TEXT NOT NULL
);
-- the same bytes arriving twice in one mailbox are one message (crash re-delivery)
CREATE UNIQUE INDEX messages_once ON messages(mailbox, sha256) WHERE direction = 'in';
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_ticket ON messages(ticket);
-- words of each incoming message (subject, sender, decoded text) for `tickets list --search`;
-- rowid = messages.id, written in the message's transaction. Contentless: the raw mail
-- already holds the words. No positions or sizes (detail = none, columnsize = 0): a
-- search matches words, never phrases, and ranks nothing, and the index is cheaper to write.
CREATE VIRTUAL TABLE message_search USING fts5(
    subject, sender, text, content = '', detail = none, columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- the audit log: every state change, what caused it and when
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    ticket     INTEGER REFERENCES tickets(number),
    account_id INTEGER REFERENCES accounts(id),
    message    INTEGER REFERENCES messages(id),
    kind       TEXT NOT NULL,
    -- 'system', 'import', 'customer:<address>', 'staff:<address>', 'sender:<address>'
    actor      TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_ticket ON events(ticket);

-- outgoing mail not yet handed to the transport; written in the transaction that decided it
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message         INTEGER NOT NULL UNIQUE REFERENCES messages(id),
    -- the mail's ticket and when it was queued, for the rate limits' counts
    ticket          INTEGER REFERENCES tickets(number),
    queued_at       TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    -- 'cancelled': an operator withdrew it (`outbox cancel`); it is never sent
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    -- a delivery status notification (bounce) reported this mail undeliverable
    bounced_at      TEXT,
    bounce_reason   TEXT
);
CREATE INDEX outbox_pending ON outbox(status, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox(recipient, queued_at);
CREATE INDEX outbox_ticket ON outbox(ticket, queued_at, recipient);

-- IMAP: the highest UID committed per mailbox, valid while UIDVALIDITY stays the same;
-- written in the same transaction as the messages it covers
CREATE TABLE mailbox_cursors (
    mailbox       TEXT PRIMARY KEY,
    uidvalidity   INTEGER NOT NULL,
    last_uid      INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    -- UIDs below were there before maildesk and skipped (initial_sync = "skip-existing")
    first_uid     INTEGER NOT NULL DEFAULT 1,
    -- UIDs below are imported as history, never answered (initial_sync = "import-silently")
    history_below INTEGER NOT NULL DEFAULT 0
);
