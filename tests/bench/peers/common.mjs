// Shared by graphile.mjs and pgboss.mjs: argument parsing, the connection string, the
// wait-until-the-database-says-done loop and the result line.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

export function die(message) {
    process.stderr.write(`${process.argv[1].split('/').pop()}: ${message}\n`);
    process.exit(1);
}

// --db <URI or key=value conn string> --jobs N --concurrency C --config default|best [--timeout-seconds S]
export function parseCommandLine() {
    let values;
    try {
        ({ values } = parseArgs({
            options: {
                db: { type: 'string' },
                jobs: { type: 'string' },
                concurrency: { type: 'string', default: '10' },
                config: { type: 'string', default: 'default' },
                'timeout-seconds': { type: 'string', default: '600' },
            },
            strict: true,
        }));
    } catch (e) {
        die(`${e.message}\nusage: node ${process.argv[1]} --db CONNSTRING --jobs N [--concurrency 10] --config default|best [--timeout-seconds S]`);
    }
    if (!values.db) die('--db is required');
    const jobs = Number(values.jobs);
    const concurrency = Number(values.concurrency);
    const timeoutSeconds = Number(values['timeout-seconds']);
    if (!Number.isInteger(jobs) || jobs < 1) die(`--jobs must be a positive integer, got '${values.jobs}'`);
    if (!Number.isInteger(concurrency) || concurrency < 1) die(`--concurrency must be a positive integer, got '${values.concurrency}'`);
    if (!(timeoutSeconds > 0)) die(`--timeout-seconds must be a positive number, got '${values['timeout-seconds']}'`);
    if (values.config !== 'default' && values.config !== 'best') die(`--config must be default or best, got '${values.config}'`);
    return { db: values.db, jobs, concurrency, config: values.config, timeoutSeconds };
}

// node-postgres takes URIs (postgres://, postgresql://, with ?host=/socket/dir for a unix socket) but not
// libpq's key=value strings ("host=/tmp/x/socket port=5432 user=postgres dbname=bench"), so those are
// turned into a config object here. Unknown keys are an error rather than silently ignored.
export function pgConfig(conn) {
    if (/^postgres(ql)?:\/\//.test(conn)) return { connectionString: conn };
    const out = {};
    const re = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|[^\s']*)/y;
    let m;
    let rest = conn;
    while (rest.trim() !== '' && (m = re.exec(rest)) !== null) {
        const key = m[1];
        const value = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2];
        rest = rest.slice(re.lastIndex);
        re.lastIndex = 0;
        switch (key) {
            case 'host': case 'hostaddr': out.host = value; break;
            case 'port': out.port = Number(value); break;
            case 'user': out.user = value; break;
            case 'password': out.password = value; break;
            case 'dbname': out.database = value; break;
            case 'application_name': out.application_name = value; break;
            case 'connect_timeout': out.connectionTimeoutMillis = Number(value) * 1000; break;
            case 'sslmode': if (value !== 'disable' && value !== 'prefer' && value !== 'allow') out.ssl = true; break;
            default: die(`unsupported connection string key '${key}'`);
        }
    }
    if (rest.trim() !== '') die(`cannot parse connection string near '${rest.trim()}'`);
    return out;
}

export const now = () => performance.now();

// Resolves with the time at which `isDone()` (a database query) first returned true. It is asked every
// `slowMs` while `hint()` (the library's own callbacks) says the work is not finished yet, and every
// `fastMs` once it says it is: the callbacks only tell us when to look closely, the database decides.
// Rejects when `deadline` (a now() value) passes first.
export async function waitUntilDone({ isDone, hint, deadline, slowMs = 250, fastMs = 5 }) {
    let lastSlow = 0;
    for (;;) {
        const t = now();
        if (t > deadline) throw new Error('timeout');
        const close = hint();
        if (close || t - lastSlow >= slowMs) {
            lastSlow = t;
            if (await isDone()) return now();
        }
        await new Promise((r) => setTimeout(r, close ? fastMs : Math.min(fastMs * 4, slowMs)));
    }
}

// The whole machine's busy CPU ticks so far (every process on every core; idle, iowait and steal excluded), by the
// rule of bench::machine_busy in tests/bench/common.sh, which measures rightsd's fan-out: a peer and rightsd are
// compared by the CPU the machine spends per job, whatever processes spend it (Node, PostgreSQL, the bench's polls).
export function machineBusy() {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0] + f[1] + f[2] + f[5] + f[6];
    return { busy, total: busy + f[3] + f[4] };
}

// machine: { before, after } machineBusy() samples around the timed run (t0 and t1)
export function printResult({ peer, config, jobs, concurrency, seconds, settings, machine }) {
    const busy = machine.after.busy - machine.before.busy;
    const total = machine.after.total - machine.before.total;
    const busyCores = total > 0 ? (busy / total) * availableParallelism() : 0;
    process.stdout.write(JSON.stringify({
        peer,
        config,
        jobs,
        concurrency,
        seconds: Number(seconds.toFixed(3)),
        jobs_per_second: Math.round(jobs / seconds),
        machine_cpu_us_per_job: Math.round((busyCores * seconds * 1e6) / jobs),
        busy_cores: Number(busyCores.toFixed(2)),
        cores: availableParallelism(),
        settings,
    }) + '\n');
}
