// pg-boss reference peer for the fan-out throughput benchmark.
//
//   node pgboss.mjs --db CONNSTRING --jobs N [--concurrency 10] --config default|best [--timeout-seconds S]
//
// 1. drops the pgboss schema in the given database, then start() installs it afresh, and createQueue('noop');
// 2. bulk-inserts N no-op jobs with boss.insert('noop', [...]) (one multi-row insert per call, 5,000
//    jobs a call), then ANALYZEs the job table; none of this is timed;
// 3. times from just before boss.work('noop', ...) until the database says all N jobs of the queue are in
//    state 'completed' (a job in state 'failed' or 'retry' fails the run);
// 4. offWork() and stop({ graceful: true }), and prints one JSON line on stdout.
//
// "default": library defaults with concurrency 10, i.e. work() with localConcurrency 10: ten workers,
// each fetching batchSize 1 and polling every pollingIntervalSeconds 2. A worker waits out that polling
// interval after every fetch, whether it found a job or not (pg-boss's worker loop only skips the wait
// in burst mode), so this configuration runs about 10 jobs per 2 s; the harness gives it few jobs.
// "best": 10 workers x batchSize 10 (localConcurrency 10, batchSize 10) with the documented knobs for
// a backlog: burstWhenBatchFull true (fetch again at once while fetches come back full) and
// pollingIntervalSeconds 0.5 (its minimum).
import { die, machineBusy, now, parseCommandLine, pgConfig, printResult, waitUntilDone } from './common.mjs';
import { PgBoss } from 'pg-boss';
import pg from 'pg';

const args = parseCommandLine();
const SCHEMA = 'pgboss';
const QUEUE = 'noop';
const INSERT_CHUNK = 5000;

const best = args.config === 'best';
const workOptions = best
    ? { localConcurrency: args.concurrency, batchSize: 10, pollingIntervalSeconds: 0.5, burstWhenBatchFull: true }
    : { localConcurrency: args.concurrency };
const settings = best
    ? `localConcurrency ${args.concurrency} x batchSize 10, burstWhenBatchFull true, pollingIntervalSeconds 0.5`
    : `localConcurrency ${args.concurrency}, library defaults (batchSize 1, pollingIntervalSeconds 2)`;

const conn = pgConfig(args.db);
// The verification queries get a pool of their own so they never take a connection from pg-boss's.
const checkPool = new pg.Pool({ ...conn, max: 2, application_name: 'bench-pgboss-check' });
checkPool.on('error', (e) => process.stderr.write(`pool error: ${e.message}\n`));

let boss = null;
let working = false;
const hardStop = setTimeout(() => die(`did not stop within ${args.timeoutSeconds + 60} s; exiting hard`),
    (args.timeoutSeconds + 60) * 1000);
hardStop.unref();

async function shutDown() {
    if (boss) {
        const b = boss;
        boss = null;
        if (working) await b.offWork(QUEUE, { wait: true });
        await b.stop({ graceful: true, timeout: 10000 });
    }
    await checkPool.end();
}

async function main() {
    // 1. a fresh schema and the queue
    await checkPool.query(`drop schema if exists ${SCHEMA} cascade`);
    boss = new PgBoss({ ...conn, schema: SCHEMA, application_name: 'bench-pgboss' });
    boss.on('error', (e) => process.stderr.write(`[pg-boss error] ${e.stack || e}\n`));
    boss.on('warning', (w) => process.stderr.write(`[pg-boss warning] ${w.message ?? JSON.stringify(w)}\n`));
    await boss.start();
    await boss.createQueue(QUEUE);

    // 2. N jobs in bulk (not timed)
    for (let done = 0; done < args.jobs; done += INSERT_CHUNK) {
        const n = Math.min(INSERT_CHUNK, args.jobs - done);
        await boss.insert(QUEUE, Array.from({ length: n }, () => ({ data: {} })));
    }
    const countJobs = async () => {
        const { rows: [r] } = await checkPool.query(
            `select count(*) as total,
                    count(*) filter (where state = 'completed') as completed,
                    count(*) filter (where state in ('failed', 'retry')) as failed
               from ${SCHEMA}.job where name = $1`, [QUEUE]);
        if (Number(r.failed) > 0) throw new Error(`${r.failed} jobs failed (state failed or retry in ${SCHEMA}.job)`);
        return { total: Number(r.total), completed: Number(r.completed) };
    };
    const queued = await countJobs();
    if (queued.total !== args.jobs || queued.completed !== 0) {
        throw new Error(`expected ${args.jobs} new jobs after the bulk insert, found ${queued.total} (${queued.completed} completed)`);
    }
    await checkPool.query(`analyze ${SCHEMA}.job`);

    // 3. run and time
    let handled = 0; // jobs handed to the handler: only a hint for when to look at the database closely
    const machineBefore = machineBusy();
    const t0 = now();
    working = true;
    await boss.work(QUEUE, workOptions, async (jobs) => { handled += jobs.length; });
    let t1;
    try {
        t1 = await waitUntilDone({
            isDone: async () => (await countJobs()).completed === args.jobs,
            hint: () => handled >= args.jobs,
            deadline: t0 + args.timeoutSeconds * 1000,
        });
    } catch (e) {
        if (e.message !== 'timeout') throw e;
        const c = await countJobs().catch(() => ({ completed: '?' }));
        await Promise.race([shutDown(), new Promise((r) => setTimeout(r, 15000))]);
        die(`timeout: ${c.completed} of ${args.jobs} jobs completed after ${args.timeoutSeconds} s (config ${args.config})`);
    }
    const machine = { before: machineBefore, after: machineBusy() };
    const seconds = (t1 - t0) / 1000;

    // 4. stop cleanly, then report
    await shutDown();
    printResult({ peer: 'pg-boss', config: args.config, jobs: args.jobs, concurrency: args.concurrency, seconds, settings, machine });
}

main().catch(async (e) => {
    process.stderr.write(`pgboss.mjs: ${e.stack || e}\n`);
    await Promise.race([shutDown().catch(() => {}), new Promise((r) => setTimeout(r, 15000))]);
    process.exit(1);
});
