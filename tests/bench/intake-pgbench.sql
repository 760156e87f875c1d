-- What rightsd sends PostgreSQL for one POST /v1/requests (an access/delete/correct request with two identities,
-- no Idempotency-Key), replayed by pgbench: keep in step with Store::Create.
\set a random(1, 4611686018427387903)
BEGIN;
INSERT INTO requests (id, type, status, received_at, received_on, channel, agent_sealed, corrections_sealed,
    acknowledge_by, respond_by, sla_state, sla_next_change, created_by, callback_url)
VALUES (md5(:a || ':' || :client_id)::uuid, 'access', 'received', now(), current_date, 'web_form', NULL, NULL,
    current_date + 14, current_date + 45, 'on_track', current_date + 9, 'bench-submitter', NULL);
INSERT INTO request_identities (request_id, ordinal, kind, lookup_hash, value_sealed)
VALUES (md5(:a || ':' || :client_id)::uuid, 0, 'email', decode(md5(:a || 'e') || md5(:a || 'f'), 'hex'),
    decode(md5(:a || 'g') || md5(:a || 'h') || md5(:a || 'i') || md5(:a || 'j') || md5(:a || 'k'), 'hex'));
INSERT INTO request_identities (request_id, ordinal, kind, lookup_hash, value_sealed)
VALUES (md5(:a || ':' || :client_id)::uuid, 1, 'phone', decode(md5(:a || 'p') || md5(:a || 'q'), 'hex'),
    decode(md5(:a || 'r') || md5(:a || 's') || md5(:a || 't') || md5(:a || 'u'), 'hex'));
INSERT INTO audit_events (request_id, actor, action, detail)
VALUES (md5(:a || ':' || :client_id)::uuid, 'bench-submitter', 'created',
    '{"type":"access","status":"received","channel":"web_form","identity_kinds":["email","phone"],"received_at":"2026-11-23T18:00:00Z","respond_by":"2027-01-07","acknowledge_by":"2026-12-08","authorized_agent": false}');
END;
