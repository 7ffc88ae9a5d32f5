-- Outbound mail: bounces reported against our mails, and the rate limits' lookups.
ALTER TABLE outbox ADD COLUMN bounced_at TEXT;
ALTER TABLE outbox ADD COLUMN bounce_reason TEXT;
CREATE INDEX outbox_recipient ON outbox(recipient);
