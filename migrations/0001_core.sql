-- rightsd core schema: requests, their identities (sealed), idempotency keys and the hash-chained audit trail.
-- Status, type and SLA strings mirror the tables in daemon/request_model.cpp.

CREATE TABLE requests (
    id                  uuid PRIMARY KEY,
    type                text NOT NULL CHECK (type IN ('access', 'delete', 'correct', 'opt_out', 'limit')),
    status              text NOT NULL CHECK (status IN ('received', 'verifying', 'in_progress', 'completed',
                                                        'partially_completed', 'denied', 'unverifiable', 'cancelled')),
    received_at         timestamptz NOT NULL,
    received_on         date NOT NULL,          -- day 0: local date of received_at in the business time zone
    channel             text NOT NULL,
    agent_sealed        bytea,                  -- authorized agent details (personal data), sealed
    corrections_sealed  bytea,                  -- requested corrections (personal data), sealed
    acknowledge_by      date,
    respond_by          date NOT NULL,
    extended            boolean NOT NULL DEFAULT false,
    extension_reason    text,
    acknowledged_on     date,
    acknowledged_at     timestamptz,
    verified_at         timestamptz,
    verification        jsonb,
    closed_at           timestamptz,
    closed_on           date,
    denial_reason       text CHECK (denial_reason IN ('unverifiable', 'exempt', 'not_a_consumer', 'other')),
    denial_detail       text,
    sla_state           text NOT NULL CHECK (sla_state IN ('on_track', 'at_risk', 'breached', 'met', 'missed')),
    sla_next_change     date,                   -- the sweeper revisits an open request on this local date
    created_by          text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((closed_at IS NULL) = (status IN ('received', 'verifying', 'in_progress'))),
    CHECK (type IN ('access', 'delete', 'correct') OR (acknowledge_by IS NULL AND NOT extended))
);

-- Keyset paging and dashboards walk requests by deadline.
CREATE INDEX requests_by_due ON requests (respond_by, id);
-- The sweeper only ever looks at open requests whose SLA state may change today.
CREATE INDEX requests_sla_sweep ON requests (sla_next_change) WHERE closed_at IS NULL;
CREATE INDEX requests_open_by_state ON requests (sla_state, respond_by) WHERE closed_at IS NULL;

CREATE TABLE request_identities (
    request_id  uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    ordinal     smallint NOT NULL,
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    lookup_hash bytea NOT NULL,   -- keyed BLAKE2b of the normalised value
    value_sealed bytea NOT NULL,  -- XChaCha20-Poly1305, bound to (request id, ordinal, kind)
    PRIMARY KEY (request_id, ordinal)
);
CREATE INDEX request_identities_lookup ON request_identities (lookup_hash);

CREATE TABLE idempotency_keys (
    client      text NOT NULL,    -- the token's name: keys are scoped per client
    key         text NOT NULL,
    body_hash   bytea NOT NULL,   -- keyed hash of the canonical body
    request_id  uuid NOT NULL REFERENCES requests (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);

-- The audit trail. Rows are appended by any process inside the transaction that makes the change; the process
-- holding the sweeper lock then seals them in commit order into a SHA-256 chain (chain_seq, prev_hash, hash).
-- Sealing after commit keeps intake from serialising on one chain head.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    request_id  uuid,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq   bigint UNIQUE,
    prev_hash   bytea,
    hash        bytea,
    CHECK ((chain_seq IS NULL) = (hash IS NULL) AND (hash IS NULL) = (prev_hash IS NULL))
);
CREATE INDEX audit_events_by_request ON audit_events (request_id, id);
CREATE INDEX audit_events_unsealed ON audit_events (id) WHERE chain_seq IS NULL;

CREATE TABLE audit_chain_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chain_seq   bigint NOT NULL,
    hash        bytea NOT NULL
);

-- Append-only: no DELETE or TRUNCATE, and an UPDATE may only seal a row that is not sealed yet.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.chain_seq IS NOT NULL
       OR NEW.id <> OLD.id OR NEW.request_id IS DISTINCT FROM OLD.request_id OR NEW.actor <> OLD.actor
       OR NEW.action <> OLD.action OR NEW.detail <> OLD.detail OR NEW.at <> OLD.at THEN
        RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
