-- GET /v1/sla/summary without scanning requests: the counts it shows are kept in tally tables by triggers, in the
-- same transaction as every change to requests and tasks, and summed when read.
--
-- Each tally is split over 64 shards. A transaction writes only the shard of its own backend (pg_backend_pid), so
-- concurrent intake, the engine and the sweeper each bump rows of their own and do not queue on one counter row;
-- two sessions share a shard only when their pids collide modulo 64, and then they merely wait for each other's
-- commit (a deadlock between them is retried by DbPool like any other).
--
-- The triggers are per statement with transition tables, so a sweep batch that moves thousands of requests writes a
-- few dozen tally rows, not thousands.

LOCK TABLE requests, tasks IN SHARE ROW EXCLUSIVE MODE;  -- nothing may change while the tallies are backfilled

-- Every request, by status, type and SLA state (open ones are those with an open status, as closed_at says).
CREATE TABLE sla_request_tallies (
    status     text NOT NULL,
    type       text NOT NULL,
    sla_state  text NOT NULL,
    shard      smallint NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (status, type, sla_state, shard)
);

-- Open requests by respond_by. Days whose count fell to zero are removed by the SLA sweep.
CREATE TABLE sla_due_tallies (
    respond_by date NOT NULL,
    shard      smallint NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (respond_by, shard)
);

-- Tasks of open requests by system and the request's SLA state; `unfinished` counts those still pending, running,
-- failed or waiting for a person. A request has at most one task per system, so `tasks` is also the number of open
-- requests with a task on the system.
CREATE TABLE sla_system_tallies (
    system     text NOT NULL,
    sla_state  text NOT NULL,
    shard      smallint NOT NULL,
    tasks      bigint NOT NULL,
    unfinished bigint NOT NULL,
    PRIMARY KEY (system, sla_state, shard)
);

-- The next acknowledgement deadline is one probe of this index.
CREATE INDEX requests_ack_due ON requests (acknowledge_by)
    WHERE closed_at IS NULL AND acknowledged_on IS NULL AND acknowledge_by IS NOT NULL;

-- The sweep pages through due requests by (sla_next_change, id): a keyset that never walks again over the index
-- entries of rows an earlier batch already moved (they stay in the index, dead, until vacuum).
CREATE INDEX requests_sla_sweep_keyset ON requests (sla_next_change, id) WHERE closed_at IS NULL;
DROP INDEX requests_sla_sweep;

CREATE FUNCTION sla_tally_shard() RETURNS smallint LANGUAGE sql STABLE AS $$ SELECT (pg_backend_pid() % 64)::smallint $$;

CREATE FUNCTION sla_task_unfinished(state text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT state IN ('pending', 'running', 'failed', 'needs_manual')
$$;

-- Every trigger adds signed deltas, one row per key, sorted so that two writers of one shard take its rows in the
-- same order.

CREATE FUNCTION sla_tally_requests_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_shard smallint := sla_tally_shard();
BEGIN
    INSERT INTO sla_request_tallies AS t (status, type, sla_state, shard, n)
        SELECT nr.status, nr.type, nr.sla_state, v_shard, count(*) FROM new_rows nr GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (status, type, sla_state, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    INSERT INTO sla_due_tallies AS t (respond_by, shard, n)
        SELECT nr.respond_by, v_shard, count(*) FROM new_rows nr WHERE nr.closed_at IS NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (respond_by, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    -- A new request has no tasks yet: they are inserted after it and counted by the tasks trigger.
    RETURN NULL;
END;
$$;

CREATE FUNCTION sla_tally_requests_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_shard smallint := sla_tally_shard();
BEGIN
    INSERT INTO sla_request_tallies AS t (status, type, sla_state, shard, n)
        SELECT d.status, d.type, d.sla_state, v_shard, sum(d.n)
        FROM (SELECT o.status, o.type, o.sla_state, -1 AS n FROM old_rows o
              UNION ALL SELECT nr.status, nr.type, nr.sla_state, 1 FROM new_rows nr) d
        GROUP BY 1, 2, 3 HAVING sum(d.n) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (status, type, sla_state, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    INSERT INTO sla_due_tallies AS t (respond_by, shard, n)
        SELECT d.respond_by, v_shard, sum(d.n)
        FROM (SELECT o.respond_by, -1 AS n FROM old_rows o WHERE o.closed_at IS NULL
              UNION ALL SELECT nr.respond_by, 1 FROM new_rows nr WHERE nr.closed_at IS NULL) d
        GROUP BY 1 HAVING sum(d.n) <> 0 ORDER BY 1
        ON CONFLICT (respond_by, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    -- Requests that opened, closed or changed SLA state carry their tasks' counts along. The tasks are read as they
    -- are now: every change to a task happens with its request's row locked (see store.cpp), so no task of these
    -- requests can change under this statement.
    INSERT INTO sla_system_tallies AS t (system, sla_state, shard, tasks, unfinished)
        SELECT d.system, d.sla_state, v_shard, sum(d.tasks), sum(d.unfinished)
        FROM (
            WITH moved AS (
                SELECT o.id, o.closed_at IS NULL AS was_open, o.sla_state AS old_state,
                       nr.closed_at IS NULL AS is_open, nr.sla_state AS new_state
                FROM old_rows o JOIN new_rows nr ON nr.id = o.id
                WHERE (o.closed_at IS NULL OR nr.closed_at IS NULL)
                  AND ((o.closed_at IS NULL) <> (nr.closed_at IS NULL) OR o.sla_state <> nr.sla_state))
            SELECT tk.system, m.old_state AS sla_state, -1 AS tasks, -sla_task_unfinished(tk.state)::int AS unfinished
            FROM moved m JOIN tasks tk ON tk.request_id = m.id WHERE m.was_open
            UNION ALL
            SELECT tk.system, m.new_state, 1, sla_task_unfinished(tk.state)::int
            FROM moved m JOIN tasks tk ON tk.request_id = m.id WHERE m.is_open) d
        GROUP BY 1, 2 HAVING sum(d.tasks) <> 0 OR sum(d.unfinished) <> 0 ORDER BY 1, 2
        ON CONFLICT (system, sla_state, shard) DO UPDATE
            SET tasks = t.tasks + EXCLUDED.tasks, unfinished = t.unfinished + EXCLUDED.unfinished;
    RETURN NULL;
END;
$$;

-- Per row and before the delete, while the request's tasks still exist (ON DELETE CASCADE removes them after it;
-- the tasks trigger then no longer finds the request and counts nothing twice). Only tests and hand repairs delete
-- requests.
CREATE FUNCTION sla_tally_requests_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_shard smallint := sla_tally_shard();
BEGIN
    INSERT INTO sla_request_tallies AS t (status, type, sla_state, shard, n)
        VALUES (OLD.status, OLD.type, OLD.sla_state, v_shard, -1)
        ON CONFLICT (status, type, sla_state, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    IF OLD.closed_at IS NULL THEN
        INSERT INTO sla_due_tallies AS t (respond_by, shard, n) VALUES (OLD.respond_by, v_shard, -1)
            ON CONFLICT (respond_by, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
        INSERT INTO sla_system_tallies AS t (system, sla_state, shard, tasks, unfinished)
            SELECT tk.system, OLD.sla_state, v_shard, -1, -sla_task_unfinished(tk.state)::int
            FROM tasks tk WHERE tk.request_id = OLD.id ORDER BY 1
            ON CONFLICT (system, sla_state, shard) DO UPDATE
                SET tasks = t.tasks + EXCLUDED.tasks, unfinished = t.unfinished + EXCLUDED.unfinished;
    END IF;
    RETURN OLD;
END;
$$;

-- Tasks count while their request is open, under the request's current SLA state.
CREATE FUNCTION sla_tally_tasks_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_shard smallint := sla_tally_shard();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sla_system_tallies AS t (system, sla_state, shard, tasks, unfinished)
            SELECT nr.system, r.sla_state, v_shard, count(*), count(*) FILTER (WHERE sla_task_unfinished(nr.state))
            FROM new_rows nr JOIN requests r ON r.id = nr.request_id WHERE r.closed_at IS NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (system, sla_state, shard) DO UPDATE
                SET tasks = t.tasks + EXCLUDED.tasks, unfinished = t.unfinished + EXCLUDED.unfinished;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO sla_system_tallies AS t (system, sla_state, shard, tasks, unfinished)
            SELECT o.system, r.sla_state, v_shard, -count(*), -count(*) FILTER (WHERE sla_task_unfinished(o.state))
            FROM old_rows o JOIN requests r ON r.id = o.request_id WHERE r.closed_at IS NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (system, sla_state, shard) DO UPDATE
                SET tasks = t.tasks + EXCLUDED.tasks, unfinished = t.unfinished + EXCLUDED.unfinished;
    ELSE
        INSERT INTO sla_system_tallies AS t (system, sla_state, shard, tasks, unfinished)
            SELECT d.system, r.sla_state, v_shard, sum(d.tasks), sum(d.unfinished)
            FROM (SELECT o.request_id, o.system, -1 AS tasks, -sla_task_unfinished(o.state)::int AS unfinished
                  FROM old_rows o
                  UNION ALL
                  SELECT nr.request_id, nr.system, 1, sla_task_unfinished(nr.state)::int FROM new_rows nr) d
            JOIN requests r ON r.id = d.request_id
            WHERE r.closed_at IS NULL
            GROUP BY 1, 2 HAVING sum(d.tasks) <> 0 OR sum(d.unfinished) <> 0 ORDER BY 1, 2
            ON CONFLICT (system, sla_state, shard) DO UPDATE
                SET tasks = t.tasks + EXCLUDED.tasks, unfinished = t.unfinished + EXCLUDED.unfinished;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sla_tally_requests_insert AFTER INSERT ON requests
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sla_tally_requests_insert();
CREATE TRIGGER sla_tally_requests_update AFTER UPDATE ON requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sla_tally_requests_update();
CREATE TRIGGER sla_tally_requests_delete BEFORE DELETE ON requests
    FOR EACH ROW EXECUTE FUNCTION sla_tally_requests_delete();
CREATE TRIGGER sla_tally_tasks_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sla_tally_tasks_change();
CREATE TRIGGER sla_tally_tasks_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sla_tally_tasks_change();
CREATE TRIGGER sla_tally_tasks_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sla_tally_tasks_change();

-- Backfill from the rows as they are (the tables are locked above), all in shard 0.
INSERT INTO sla_request_tallies (status, type, sla_state, shard, n)
    SELECT status, type, sla_state, 0, count(*) FROM requests GROUP BY 1, 2, 3;
INSERT INTO sla_due_tallies (respond_by, shard, n)
    SELECT respond_by, 0, count(*) FROM requests WHERE closed_at IS NULL GROUP BY 1;
INSERT INTO sla_system_tallies (system, sla_state, shard, tasks, unfinished)
    SELECT tk.system, r.sla_state, 0, count(*), count(*) FILTER (WHERE sla_task_unfinished(tk.state))
    FROM tasks tk JOIN requests r ON r.id = tk.request_id WHERE r.closed_at IS NULL GROUP BY 1, 2;
