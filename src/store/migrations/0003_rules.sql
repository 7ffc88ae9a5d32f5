-- Rules: what they decide about a ticket (category, queue, tags), abuse cases, incidents,
-- quarantine, and changes waiting for confirmation from the registered address.
CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    impact      TEXT,
    opened_at   TEXT NOT NULL,
    resolved_at TEXT
);
CREATE TABLE ticket_tags (
    ticket INTEGER NOT NULL REFERENCES tickets(number),
    tag    TEXT NOT NULL,
    PRIMARY KEY (ticket, tag)
) WITHOUT ROWID;
ALTER TABLE tickets ADD COLUMN category TEXT;
ALTER TABLE tickets ADD COLUMN queue TEXT;
ALTER TABLE tickets ADD COLUMN case_category TEXT;
ALTER TABLE tickets ADD COLUMN case_severity TEXT CHECK (case_severity IN ('low', 'normal', 'high', 'critical'));
ALTER TABLE tickets ADD COLUMN incident_id INTEGER REFERENCES incidents(id);
ALTER TABLE tickets ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0 CHECK (quarantined IN (0, 1));
ALTER TABLE tickets ADD COLUMN confirmation TEXT;
