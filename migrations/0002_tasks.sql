-- The fan-out engine: one task per (request, system), claimed with FOR UPDATE SKIP LOCKED under a lease; status
-- callbacks to the requester kept in an outbox written in the same transaction as the change they report; the
-- sealed access package of a completed access request.

CREATE TABLE tasks (
    id                uuid PRIMARY KEY,
    request_id        uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    system            text NOT NULL,
    connector         text NOT NULL,
    action            text NOT NULL CHECK (action IN ('access', 'delete', 'deidentify', 'locate', 'correct',
                                                      'opt_out', 'limit')),
    state             text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'not_found', 'retained_exempt',
                                                     'failed', 'needs_manual', 'cancelled')),
    respond_by        date NOT NULL,          -- the request's deadline: claims go earliest deadline first
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- While running: who holds it and until when. A task waiting on an asynchronous peer operation is 'running'
    -- with no owner and a lease that expires when it is due for its next poll.
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_error        text,
    continuation      jsonb,
    receipt           jsonb,
    records_sealed    bytea,                  -- access results (personal data), sealed
    retain_basis      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    UNIQUE (request_id, system),
    CHECK (state <> 'running' OR lease_expires_at IS NOT NULL)
);
CREATE INDEX tasks_due ON tasks (respond_by, next_attempt_at) WHERE state = 'pending';
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_by_request ON tasks (request_id);

-- Wakes every dispatcher (LISTEN rightsd_tasks) when work becomes due now. Tasks due later are found by the
-- dispatchers' own timers.
CREATE FUNCTION tasks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'pending' AND NEW.next_attempt_at <= now() THEN
        PERFORM pg_notify('rightsd_tasks', '');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE OF state, next_attempt_at ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_notify();

ALTER TABLE requests ADD COLUMN callback_url text;

CREATE TABLE request_packages (
    request_id      uuid PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    package_sealed  bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE callbacks (
    id               bigserial PRIMARY KEY,
    request_id       uuid NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    url              text NOT NULL,
    body             jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';
