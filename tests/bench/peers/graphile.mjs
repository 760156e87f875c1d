// graphile-worker reference peer for the fan-out throughput benchmark.
//
//   node graphile.mjs --db CONNSTRING --jobs N [--concurrency 10] --config default|best [--timeout-seconds S]
//
// 1. drops and re-creates the graphile_worker schema in the given database (migrate());
// 2. bulk-inserts N no-op jobs with WorkerUtils.addJobs() (the graphile_worker.add_jobs() SQL function),
//    5,000 per call, then ANALYZEs the jobs table; none of this is timed;
// 3. starts a runner with the task list { noop: async () => {} } and times from just before run() until
//    the database holds no job any more (graphile-worker deletes a job when it completes; a failed job
//    stays with last_error set and fails the run);
// 4. stops the runner and the pools and prints one JSON line on stdout.
//
// "default": library defaults with concurrency 10 (a pool of 10 connections, no local queue, one
// complete_jobs/fail_jobs call per job). "best": the settings of graphile-worker's own perfTest
// (perfTest/graphile.config.js): localQueue { size: 500, refetchDelay { durationMs: 10 } },
// completeJobBatchDelay 0, failJobBatchDelay 0, maxPoolSize concurrency + 1.
// Both run with NO_LOG_SUCCESS=1, as the perfTest does, so no "Completed task" line is logged per job;
// the library's other log lines go to stderr, stdout carries only the result.
import { EventEmitter } from 'node:events';
import { die, machineBusy, now, parseCommandLine, pgConfig, printResult, waitUntilDone } from './common.mjs';

process.env.NO_LOG_SUCCESS = '1'; // read when graphile-worker is loaded, so before the import below
const { run, makeWorkerUtils, Logger } = await import('graphile-worker');
const { default: pg } = await import('pg');

const args = parseCommandLine();
const SCHEMA = 'graphile_worker';
const INSERT_CHUNK = 5000;

const logger = new Logger((scope) => (level, message) => {
    if (level === 'debug') return;
    process.stderr.write(`[graphile-worker ${level}${scope.label ? ` ${scope.label}` : ''}] ${message}\n`);
});

const best = args.config === 'best';
const preset = best
    ? {
        worker: {
            localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
        },
    }
    : { worker: {} };
const maxPoolSize = best ? args.concurrency + 1 : 10; // 10 is graphile-worker's default maxPoolSize
const settings = best
    ? `concurrency ${args.concurrency}, localQueue.size 500, localQueue.refetchDelay.durationMs 10, completeJobBatchDelay 0, failJobBatchDelay 0, maxPoolSize ${maxPoolSize} (perfTest settings)`
    : `concurrency ${args.concurrency}, library defaults (maxPoolSize 10, no local queue, unbatched completions)`;

const conn = pgConfig(args.db);
// The verification queries get a pool of their own so they never take a connection from the workers.
const checkPool = new pg.Pool({ ...conn, max: 2, application_name: 'bench-graphile-check' });
const workerPool = new pg.Pool({ ...conn, max: maxPoolSize, application_name: 'bench-graphile-worker' });
for (const p of [checkPool, workerPool]) {
    p.on('error', (e) => process.stderr.write(`pool error: ${e.message}\n`));
    p.on('connect', (client) => client.on('error', (e) => process.stderr.write(`client error: ${e.message}\n`)));
}

let runner = null;
const hardStop = setTimeout(() => die(`did not stop within ${args.timeoutSeconds + 60} s; exiting hard`),
    (args.timeoutSeconds + 60) * 1000);
hardStop.unref();

async function shutDown() {
    if (runner) {
        const r = runner;
        runner = null;
        await r.stop();
        await r.promise.catch(() => {});
    }
    await workerPool.end();
    await checkPool.end();
}

async function main() {
    // 1. a fresh schema
    await checkPool.query(`drop schema if exists ${SCHEMA} cascade`);
    const utils = await makeWorkerUtils({ pgPool: checkPool, schema: SCHEMA, logger });
    await utils.migrate();

    // 2. N jobs in bulk (not timed)
    for (let done = 0; done < args.jobs; done += INSERT_CHUNK) {
        const n = Math.min(INSERT_CHUNK, args.jobs - done);
        await utils.addJobs(Array.from({ length: n }, () => ({ identifier: 'noop', payload: {} })));
    }
    await utils.release();
    const countJobs = async () => {
        const { rows: [r] } = await checkPool.query(
            `select count(*) as n, count(*) filter (where last_error is not null) as failed from ${SCHEMA}._private_jobs`);
        if (Number(r.failed) > 0) throw new Error(`${r.failed} jobs failed (last_error is set in ${SCHEMA}._private_jobs)`);
        return Number(r.n);
    };
    const queued = await countJobs();
    if (queued !== args.jobs) throw new Error(`expected ${args.jobs} queued jobs after the bulk insert, found ${queued}`);
    await checkPool.query(`analyze ${SCHEMA}._private_jobs`);

    // 3. run and time
    let finished = 0; // job:complete events: only a hint for when to look at the database closely
    const events = new EventEmitter();
    events.on('job:complete', () => { finished++; });
    const machineBefore = machineBusy();
    const t0 = now();
    runner = await run({
        pgPool: workerPool,
        schema: SCHEMA,
        concurrency: args.concurrency,
        noHandleSignals: true,
        taskList: { noop: async () => {} },
        parsedCronItems: [], // no cron: do not look for a crontab file
        logger,
        events,
        preset,
    });
    let t1;
    try {
        t1 = await waitUntilDone({
            isDone: async () => (await countJobs()) === 0,
            hint: () => finished >= args.jobs,
            deadline: t0 + args.timeoutSeconds * 1000,
        });
    } catch (e) {
        if (e.message !== 'timeout') throw e;
        const left = await countJobs().catch(() => '?');
        await Promise.race([shutDown(), new Promise((r) => setTimeout(r, 10000))]);
        die(`timeout: ${left} of ${args.jobs} jobs still in ${SCHEMA}._private_jobs after ${args.timeoutSeconds} s (config ${args.config})`);
    }
    const machine = { before: machineBefore, after: machineBusy() };
    const seconds = (t1 - t0) / 1000;

    // 4. stop cleanly, then report
    await shutDown();
    printResult({ peer: 'graphile-worker', config: args.config, jobs: args.jobs, concurrency: args.concurrency, seconds, settings, machine });
}

main().catch(async (e) => {
    process.stderr.write(`graphile.mjs: ${e.stack || e}\n`);
    await Promise.race([shutDown().catch(() => {}), new Promise((r) => setTimeout(r, 10000))]);
    process.exit(1);
});
