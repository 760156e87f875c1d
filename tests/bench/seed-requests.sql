-- Seeds requests :from .. :from + :count - 1 straight into the tables (psql -v from=.. -v count=..), as intake and
-- the engine would have left them: request n has the id 00000000-0000-4000-8000-<n as 12 hex digits> (the same
-- rule as rightsd_bench seed-identities, which writes their sealed identities), received over the last two years,
-- one in five still open. Each has its "created" audit event and, if closed, its closing one, linked into the audit
-- chain by the insert itself (migration 0007), as the daemon's would be.
\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE seed ON COMMIT DROP AS
SELECT n,
       ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid AS id,
       (ARRAY['access', 'delete', 'correct', 'opt_out', 'limit'])[1 + n % 5] AS type,
       now() - make_interval(secs => (n * 7919) % (730 * 86400)) AS received_at,
       n % 5 = 0 AS open
FROM generate_series(:from::bigint, :from::bigint + :count::bigint - 1) AS n;
-- Open ones are recent (the last 40 days), so that their deadlines are live.
UPDATE seed SET received_at = now() - make_interval(secs => (n * 7919) % (40 * 86400)) WHERE open;

INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, acknowledged_on,
                      acknowledged_at, verified_at, closed_at, closed_on, sla_state, created_by, updated_at)
SELECT id, type,
       CASE WHEN open THEN 'in_progress' ELSE 'completed' END,
       received_at, received_at::date, 'web_form',
       CASE WHEN type IN ('access', 'delete', 'correct') THEN received_at::date + 14 END,
       received_at::date + CASE WHEN type IN ('opt_out', 'limit') THEN 21 ELSE 45 END,
       CASE WHEN type IN ('access', 'delete', 'correct') THEN received_at::date + 2 END,
       CASE WHEN type IN ('access', 'delete', 'correct') THEN received_at + interval '2 days' END,
       CASE WHEN type IN ('access', 'delete', 'correct') THEN received_at + interval '3 days' END,
       CASE WHEN open THEN NULL ELSE received_at + interval '20 days' END,
       CASE WHEN open THEN NULL ELSE received_at::date + 20 END,
       CASE WHEN open THEN 'on_track' ELSE 'met' END,
       'bench-submitter', received_at
FROM seed;

INSERT INTO audit_events (request_id, actor, action, detail, at)
SELECT id, 'bench-submitter', 'created',
       jsonb_build_object('type', type, 'channel', 'web_form', 'identity_kinds', jsonb_build_array('email', 'phone')),
       received_at
FROM seed;
INSERT INTO audit_events (request_id, actor, action, detail, at)
SELECT id, 'bench-admin', 'completed', jsonb_build_object('from', 'in_progress', 'to', 'completed'),
       received_at + interval '20 days'
FROM seed WHERE NOT open;
COMMIT;
