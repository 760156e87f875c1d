-- tasks_notify ran its plpgsql function for every row of every claim and outcome (200,000 calls per 100,000 tasks)
-- only to find that the task was not becoming due. The condition as the trigger's WHEN is checked by the executor
-- without calling the function, which now runs only for a task that is due now.
DROP TRIGGER tasks_notify ON tasks;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE OF state, next_attempt_at ON tasks
    FOR EACH ROW WHEN (NEW.state = 'pending' AND NEW.next_attempt_at <= now()) EXECUTE FUNCTION tasks_notify();
