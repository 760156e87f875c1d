-- The sweeper finds the open requests whose SLA state changes today from their deadlines, not from a stored
-- revisit day. With sla_next_change the due set was whatever that column said: after a restore of an old backup
-- (or any stale column) every open request was "due", and a sweep rewrote 1,000,000 rows to learn that none had
-- changed (25 s). A state changes by itself only in three ways (daemon/sla.cpp, EvaluateSla), each a range on an
-- index of open requests that the sweep walks by keyset:
--   on_track -> at_risk or breached: respond_by <= today + at_risk_days       (requests_open_by_state)
--   at_risk  -> breached:             respond_by <  today                      (requests_open_by_state)
--   either   -> breached:             acknowledge_by < today, not acknowledged (requests_awaiting_acknowledgement)
-- so a sweep reads only the rows whose state changes, and rewrites each once. Two indexes fewer also make every
-- write of a request cheaper. The column itself stays, unused and unindexed, so that a daemon from before this
-- migration still running during a rolling upgrade can go on writing it; a later migration drops it.
DROP INDEX requests_sla_sweep_keyset;  -- (requests_sla_sweep went in 0004)
-- id last: the sweep pages through (respond_by, id) within one state.
DROP INDEX requests_open_by_state;
CREATE INDEX requests_open_by_state ON requests (sla_state, respond_by, id) WHERE closed_at IS NULL;
-- Breached requests leave it: an unacknowledged breach is not walked again by every sweep.
CREATE INDEX requests_awaiting_acknowledgement ON requests (acknowledge_by, id)
    WHERE closed_at IS NULL AND acknowledged_on IS NULL AND acknowledge_by IS NOT NULL AND sla_state <> 'breached';
