-- The audit trail is chained in the transaction that writes it, not sealed afterwards.
--
-- Until now the process holding the sweeper lock sealed new events into one SHA-256 chain some 250 ms after they
-- committed, by rewriting every event row (chain_seq, prev_hash, hash). That rewrite was the largest single cost of
-- the task engine (~45 % of PostgreSQL's statement time in a 100,000-task burst: each UPDATE wrote a new copy of the
-- whole row and of all its index entries, and ran a PL/pgSQL row trigger), and an edit made inside the window
-- before sealing went unnoticed.
--
-- Now every statement that inserts audit events also appends one *link* to a chain, in the same transaction, by the
-- statement-level trigger below:
--   leaf(event) = SHA-256 of the event's canonical form (the length-prefixed id, request id, actor, action, time in
--                 microseconds and detail text: the form daemon/audit.cpp computes, without a previous hash)
--   link.hash   = SHA-256(previous link's hash || leaf(e1) || leaf(e2) || ...), the statement's events in id
--                 order; the previous hash of a chain's first link is 32 zero bytes
-- Events are never updated again. There are 64 chains, so that concurrent writers do not queue on one chain head:
-- each database session takes a chain of its own for its lifetime (a session advisory lock), starting from its
-- backend pid's slot; with more than 64 sessions writing at once, sessions share a chain and take turns on its row
-- lock until commit. `rightsd audit verify` walks every chain link by link, recomputes each event's leaf and each
-- link's hash, checks that every event is in exactly one link, and that each chain ends where its head row says.
--
-- Events sealed before this migration keep their place in the first chain (chain_seq, prev_hash, hash, verified
-- against audit_chain_head as before); events not yet sealed when it runs are linked here, as one link of chain 1.

CREATE TABLE audit_chains (
    chain_id  integer PRIMARY KEY CHECK (chain_id BETWEEN 1 AND 64),
    seq       bigint NOT NULL,   -- the last link's seq; 0 before the first
    hash      bytea NOT NULL     -- the last link's hash; 32 zero bytes before the first
);
INSERT INTO audit_chains (chain_id, seq, hash) SELECT g, 0, decode(repeat('00', 32), 'hex') FROM generate_series(1, 64) g;

-- A link does not repeat the previous link's hash: verify carries it from link to link (it is the head's hash just
-- before the link was written, which the one statement that writes both cannot return).
CREATE TABLE audit_links (
    chain_id   integer NOT NULL,
    seq        bigint NOT NULL,
    event_ids  bigint[] NOT NULL,  -- the statement's events, in id order
    leaves     bytea NOT NULL,     -- their leaf hashes, 32 bytes each, in the same order
    hash       bytea NOT NULL,     -- SHA-256(the previous link's hash || leaves)
    PRIMARY KEY (chain_id, seq)
);

-- The canonical form of one event: each field as its length in bytes, ':' and the bytes, in a fixed order, so that
-- no value can imitate a field boundary. The arguments are the fields' text forms (the caller computes each once).
-- STABLE, as convert_to is: a SQL function declared IMMUTABLE around a stable body is not inlined, and one that is
-- not inlined is planned anew for every statement that calls it (it was a third of the trigger's time).
CREATE FUNCTION audit_canonical(id text, request_id text, actor text, action text, at_us text, detail text)
    RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(octet_length(id) || ':' || id || octet_length(request_id) || ':' || request_id
                      || octet_length(actor) || ':' || actor || octet_length(action) || ':' || action
                      || octet_length(at_us) || ':' || at_us || octet_length(detail) || ':' || detail, 'UTF8')
$$;

-- This session's chain: taken once (a session advisory lock in the (1920230497, chain) key space, released when
-- the session ends) and remembered in a session setting. The search starts at the pid's slot, as the SLA tallies'
-- shards do, so sessions spread over the chains without asking each other.
CREATE FUNCTION audit_session_chain() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_chain integer := nullif(current_setting('rightsd.audit_chain', true), '')::integer;
    v_slot integer := pg_backend_pid() % 64;
BEGIN
    IF v_chain IS NOT NULL THEN
        RETURN v_chain;
    END IF;
    FOR i IN 0 .. 63 LOOP
        v_chain := (v_slot + i) % 64 + 1;
        IF pg_try_advisory_lock(1920230497, v_chain) THEN
            -- Session-wide; undone if this transaction aborts, while the lock stays: the next call takes the same
            -- chain again (the lock is re-entrant).
            PERFORM set_config('rightsd.audit_chain', v_chain::text, false);
            RETURN v_chain;
        END IF;
    END LOOP;
    -- Every chain has a session of its own: share the slot's chain, serialised by its row lock.
    RETURN v_slot + 1;
END;
$$;

-- Links the events of one statement: their leaves and the new link come from one statement, which also moves the
-- chain's head. The head's row stays locked until the transaction ends, so a chain's links are in commit order;
-- when sessions share a chain, the UPDATE waits for the other's commit and builds on the head that one left.
-- Everything is one statement with no nested PL/pgSQL call: every statement a trigger runs costs tens of
-- microseconds, and this runs for every statement that writes events, each intake's included.
CREATE FUNCTION audit_link_new_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_chain integer := nullif(current_setting('rightsd.audit_chain', true), '')::integer;
BEGIN
    IF v_chain IS NULL THEN
        v_chain := audit_session_chain();
    END IF;
    -- OFFSET 0 keeps the text forms in a subquery of their own, computed once per event (flattened, detail::text
    -- would be computed once for its length and once more for its bytes).
    WITH leaves AS (
        SELECT array_agg(f.id ORDER BY f.id) AS ids,
               string_agg(sha256(audit_canonical(f.id::text, f.request_id, f.actor, f.action, f.at_us, f.detail)),
                          ''::bytea ORDER BY f.id) AS bytes
        FROM (SELECT e.id, coalesce(e.request_id::text, '') AS request_id, e.actor, e.action,
                     ((extract(epoch from e.at) * 1000000)::bigint)::text AS at_us, e.detail::text AS detail
              FROM new_events e OFFSET 0) f),
    head AS (
        UPDATE audit_chains c SET seq = c.seq + 1, hash = sha256(c.hash || l.bytes)
        FROM leaves l WHERE c.chain_id = v_chain AND l.ids IS NOT NULL
        RETURNING c.seq, c.hash)
    INSERT INTO audit_links (chain_id, seq, event_ids, leaves, hash)
        SELECT v_chain, h.seq, l.ids, l.bytes, h.hash FROM head h, leaves l;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_events_link AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION audit_link_new_events();

-- Events are never updated now: every UPDATE, DELETE and TRUNCATE is refused. Links likewise.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_links_append_only BEFORE UPDATE OR DELETE ON audit_links
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_links_no_truncate BEFORE TRUNCATE ON audit_links
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The indexes the sealer needed cost every new event two more index entries: the legacy positions keep their
-- uniqueness in a partial index, which new events (chain_seq NULL) never enter.
CREATE UNIQUE INDEX audit_events_legacy_chain ON audit_events (chain_seq) WHERE chain_seq IS NOT NULL;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_chain_seq_key;
DROP INDEX audit_events_unsealed;

-- Events the sealer had not reached yet: one link of chain 1, written as the trigger writes one.
WITH leaves AS (
    SELECT array_agg(f.id ORDER BY f.id) AS ids,
           string_agg(sha256(audit_canonical(f.id::text, f.request_id, f.actor, f.action, f.at_us, f.detail)),
                      ''::bytea ORDER BY f.id) AS bytes
    FROM (SELECT e.id, coalesce(e.request_id::text, '') AS request_id, e.actor, e.action,
                 ((extract(epoch from e.at) * 1000000)::bigint)::text AS at_us, e.detail::text AS detail
          FROM audit_events e WHERE e.chain_seq IS NULL OFFSET 0) f),
head AS (
    UPDATE audit_chains c SET seq = c.seq + 1, hash = sha256(c.hash || l.bytes)
    FROM leaves l WHERE c.chain_id = 1 AND l.ids IS NOT NULL
    RETURNING c.seq, c.hash)
INSERT INTO audit_links (chain_id, seq, event_ids, leaves, hash)
    SELECT 1, h.seq, l.ids, l.bytes, h.hash FROM head h, leaves l;
