-- Seeds the SLA benchmark (tests/bench/sla.sh) straight into the tables: psql -v open=N -v closed=M -v from=F
-- -v today=YYYY-MM-DD. Requests are numbered from :from; their columns are what Store::Create, Apply and the
-- sweeper would have left, under the CHECK constraints of migrations 0001-0003:
--   open:   received over the last 45 days (opt-out and limit, due in 15 business days, over the last 21), so that
--           the days their states change are spread as in steady state; the SLA state is that of a sweep run
--           yesterday (EvaluateSla in SQL, at_risk_days 10). Most are acknowledged on day 2 and in
--           progress with a task on each of two systems; the newest are still received; one in fifty was never
--           acknowledged and breaches when acknowledge_by passes.
--   closed: received 46 days to two years ago, completed on day 20, met.
-- Deadlines are approximated in calendar days (acknowledge_by = day 14 for 10 business days, opt-out respond_by
-- = day 21); the sweep reads them from the row, so this changes which day a request moves, not how much work it is.
\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE seed ON COMMIT DROP AS
SELECT n,
       ('00000000-0000-4000-9000-' || lpad(to_hex(n), 12, '0'))::uuid AS id,
       (ARRAY['access', 'delete', 'correct', 'opt_out', 'limit'])[1 + n % 5] AS type
FROM generate_series(:from::bigint, :from::bigint + :open::bigint - 1) AS n;
ALTER TABLE seed ADD COLUMN ack boolean, ADD COLUMN received_on date, ADD COLUMN status text,
    ADD COLUMN acknowledge_by date, ADD COLUMN respond_by date, ADD COLUMN acknowledged_on date;
UPDATE seed SET ack = type IN ('access', 'delete', 'correct');
UPDATE seed SET received_on = :'today'::date - 1 - (n % CASE WHEN ack THEN 45 ELSE 21 END)::int;
UPDATE seed SET acknowledge_by = CASE WHEN ack THEN received_on + 14 END,
                respond_by = received_on + CASE WHEN ack THEN 45 ELSE 21 END,
                status = CASE WHEN NOT ack THEN 'in_progress'
                              WHEN :'today'::date - received_on <= 2 THEN 'received'
                              WHEN n % 50 = 0 THEN 'verifying'
                              ELSE 'in_progress' END;
UPDATE seed SET acknowledged_on = CASE WHEN ack AND status = 'in_progress' THEN received_on + 2 END;

-- EvaluateSla (daemon/sla.cpp) as of yesterday, with at_risk_days = 10.
CREATE TEMP TABLE seed_sla ON COMMIT DROP AS
SELECT s.*, y,
       (s.acknowledge_by IS NOT NULL AND coalesce(s.acknowledged_on > s.acknowledge_by, y > s.acknowledge_by)) AS ack_missed
FROM seed s, (SELECT :'today'::date - 1 AS y) d;

INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, acknowledged_on,
                      acknowledged_at, verified_at, sla_state, created_by, updated_at)
SELECT id, type, status, received_on + time '17:00' AT TIME ZONE 'UTC', received_on, 'web_form', acknowledge_by,
       respond_by, acknowledged_on,
       CASE WHEN acknowledged_on IS NOT NULL THEN acknowledged_on + time '18:00' AT TIME ZONE 'UTC' END,
       CASE WHEN status = 'in_progress' AND ack THEN acknowledged_on + time '19:00' AT TIME ZONE 'UTC' END,
       CASE WHEN y > respond_by OR ack_missed THEN 'breached'
            WHEN respond_by - y <= 10 THEN 'at_risk' ELSE 'on_track' END,
       'bench-submitter', now()
FROM seed_sla;

INSERT INTO tasks (id, request_id, system, connector, action, state, respond_by, max_attempts)
SELECT gen_random_uuid(), s.id, sys, 'noop', CASE WHEN s.type IN ('opt_out', 'limit') THEN s.type ELSE 'delete' END,
       CASE WHEN (s.n + length(sys)) % 3 = 0 THEN 'done' ELSE 'pending' END, s.respond_by, 8
FROM seed s, unnest(ARRAY['crm', 'ehr']) sys
WHERE s.status = 'in_progress';
COMMIT;

-- Closed requests, in one statement per million so that memory stays flat.
BEGIN;
INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, acknowledged_on,
                      acknowledged_at, verified_at, closed_at, closed_on, sla_state, created_by, updated_at)
SELECT ('00000000-0000-4000-a000-' || lpad(to_hex(n), 12, '0'))::uuid,
       (ARRAY['access', 'delete', 'correct', 'opt_out', 'limit'])[1 + n % 5], 'completed',
       d + time '17:00' AT TIME ZONE 'UTC', d, 'web_form',
       CASE WHEN n % 5 < 3 THEN d + 14 END, d + CASE WHEN n % 5 < 3 THEN 45 ELSE 21 END,
       CASE WHEN n % 5 < 3 THEN d + 2 END, CASE WHEN n % 5 < 3 THEN d + 2 + time '18:00' AT TIME ZONE 'UTC' END,
       CASE WHEN n % 5 < 3 THEN d + 2 + time '19:00' AT TIME ZONE 'UTC' END,
       d + 20 + time '17:00' AT TIME ZONE 'UTC', d + 20, 'met', 'bench-submitter', now()
FROM (SELECT n, :'today'::date - 46 - (n % 684)::int AS d
      FROM generate_series(:from::bigint, :from::bigint + :closed::bigint - 1) AS n) c;
COMMIT;
