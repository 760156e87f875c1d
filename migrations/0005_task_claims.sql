-- Claims go one system at a time, earliest respond_by first (Store::ClaimTasks): the ready tasks of a system are
-- read in claim order from an index that holds pending tasks only, and expired leases from one that holds running
-- tasks only, so that both stay as small as the work in flight however many tasks have finished.
CREATE INDEX tasks_ready ON tasks (system, respond_by, next_attempt_at) WHERE state = 'pending';
CREATE INDEX tasks_lease_expiry ON tasks (system, lease_expires_at) WHERE state = 'running';
DROP INDEX tasks_due;
DROP INDEX tasks_leased;
-- UNIQUE (request_id, system) serves every lookup by request: a second index on request_id alone only cost a write
-- per task update (a task's state is in the partial indexes' predicates, so its updates are never HOT).
DROP INDEX tasks_by_request;
-- A task row is updated twice in its life (claimed, finished): dead tuples pile up at the dispatch rate. Vacuum
-- them at 2 % rather than 20 % of the table, and without cost-based pauses, so that the ready index and the heap
-- do not bloat over a long busy spell.
ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0,
                       autovacuum_analyze_scale_factor = 0.05);
