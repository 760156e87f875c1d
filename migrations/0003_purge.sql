-- Retention (11 CCR §7101): once a request has been closed longer than purge.retention_months, `rightsd purge`
-- removes the personal data it holds (identities, agent details, corrections, access records and the package) and
-- keeps the record §7101(b) asks for. purged_at says when; a request that is still open can never be purged.

ALTER TABLE requests ADD COLUMN purged_at timestamptz;
ALTER TABLE requests ADD CONSTRAINT requests_purged_only_when_closed CHECK (purged_at IS NULL OR closed_at IS NOT NULL);

-- The purge walks closed, not yet purged requests from the oldest closing day.
CREATE INDEX requests_purge_due ON requests (closed_on, id) WHERE closed_at IS NOT NULL AND purged_at IS NULL;
