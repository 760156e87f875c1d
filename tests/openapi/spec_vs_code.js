#!/usr/bin/env node
// Holds schemas/openapi.yaml to the code:
//   node spec_vs_code.js lint SOURCE_DIR     Redocly's recommended rules: no error and no warning
//   node spec_vs_code.js routes SOURCE_DIR   every route daemon/http_api.cpp registers is a path+method of the spec
//                                            and vice versa; every problem type of daemon/errors.cpp is in the
//                                            spec's ProblemType enum and vice versa
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const [mode, source] = process.argv.slice(2);
if (!['lint', 'routes'].includes(mode) || !source) {
  process.stderr.write('usage: spec_vs_code.js lint|routes SOURCE_DIR\n');
  process.exit(2);
}
const spec = path.join(source, 'schemas', 'openapi.yaml');
const redocly = path.join(__dirname, 'node_modules', '.bin', 'redocly');
if (!fs.existsSync(redocly)) {
  process.stderr.write(`${redocly} is missing: run npm ci in ${__dirname} (scripts/lib.sh rightsd::install_node_deps)\n`);
  process.exit(1);
}
// Redocly asks for telemetry and update checks over the network; neither may leave this machine.
const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_UPDATE_NOTIFIER: '1' };

// Redocly reports on stderr as well as stdout: both are read.
function run(args) {
  const r = spawnSync(redocly, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

if (mode === 'lint') {
  const { code, out } = run(['lint', spec, '--format=stylish']);
  const text = out;
  const warnings = /You have (\d+) warnings?/.exec(text);
  process.stdout.write(text);
  if (code !== 0 || warnings) {
    process.stderr.write(`redocly lint: exit ${code}${warnings ? `, ${warnings[1]} warning(s)` : ''}\n`);
    process.exit(1);
  }
  process.exit(0);
}

// --- routes ----------------------------------------------------------------------------------------------------
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rightsd-openapi-'));
let bundled;
try {
  const out = path.join(tmp, 'openapi.json');
  const r = run(['bundle', spec, '--ext', 'json', '-o', out]);
  if (r.code !== 0) {
    process.stderr.write(r.out);
    process.exit(1);
  }
  bundled = JSON.parse(fs.readFileSync(out, 'utf8'));
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

const methods = ['get', 'post', 'put', 'patch', 'delete'];
const inSpec = new Set();
// A path parameter whose schema is an enum (e.g. the dashboard's file names) stands for each of its values.
function specPaths(p, params) {
  const m = /\{([^}]+)\}/.exec(p);
  if (!m) return [p];
  const param = params.find((x) => x.in === 'path' && x.name === m[1]);
  const values = param?.schema?.enum;
  const rest = (v) => specPaths(p.slice(0, m.index) + v + p.slice(m.index + m[0].length), params);
  return values ? values.flatMap((v) => rest(String(v))) : rest('{}');
}
for (const [p, item] of Object.entries(bundled.paths ?? {})) {
  for (const m of methods) {
    if (!item[m]) continue;
    const params = [...(item.parameters ?? []), ...(item[m].parameters ?? [])];
    for (const concrete of specPaths(p, params)) inSpec.add(`${m.toUpperCase()} ${concrete}`);
  }
}

// server_->Get("/path", ...) and server_->Post(R"(/v1/requests/([^/]+)/(a|b))", ...): capture groups that match one
// segment become {}, alternations become one route each.
const api = fs.readFileSync(path.join(source, 'daemon', 'http_api.cpp'), 'utf8');
const inCode = new Set();
const registration = /server_(?:\.|->)(Get|Post|Put|Patch|Delete)\(\s*(?:R"\((.*?)\)"|"([^"]*)")/gs;
function expand(pattern) {
  const alt = /\(([A-Za-z0-9_|\\.-]+)\)/.exec(pattern);
  if (alt && alt[1].includes('|')) {
    return alt[1].split('|').flatMap((a) => expand(pattern.slice(0, alt.index) + a + pattern.slice(alt.index + alt[0].length)));
  }
  if (alt) return expand(pattern.slice(0, alt.index) + alt[1] + pattern.slice(alt.index + alt[0].length));
  return [pattern.replace(/\(\[\^\/\]\+\)/g, '{}').replace(/\\\./g, '.')];
}
for (const m of api.matchAll(registration)) {
  for (const p of expand(m[2] ?? m[3])) inCode.add(`${m[1].toUpperCase()} ${p}`);
}
if (inCode.size === 0) {
  process.stderr.write('found no route registrations in daemon/http_api.cpp: the pattern of this check is out of date\n');
  process.exit(1);
}

let failed = false;
for (const r of [...inCode].sort()) {
  if (!inSpec.has(r)) {
    process.stderr.write(`the server serves ${r}, which openapi.yaml does not describe\n`);
    failed = true;
  }
}
for (const r of [...inSpec].sort()) {
  if (!inCode.has(r)) {
    process.stderr.write(`openapi.yaml describes ${r}, which the server does not register\n`);
    failed = true;
  }
}

const errors = fs.readFileSync(path.join(source, 'daemon', 'errors.cpp'), 'utf8');
const typesInCode = new Set(errors.match(/urn:rightsd:problem:[a-z-]+/g) ?? []);
const typesInSpec = new Set(bundled.components?.schemas?.ProblemType?.enum ?? []);
for (const t of typesInCode) {
  if (!typesInSpec.has(t)) {
    process.stderr.write(`daemon/errors.cpp answers ${t}, which ProblemType in openapi.yaml does not list\n`);
    failed = true;
  }
}
for (const t of typesInSpec) {
  if (!typesInCode.has(t)) {
    process.stderr.write(`ProblemType in openapi.yaml lists ${t}, which daemon/errors.cpp never answers\n`);
    failed = true;
  }
}
process.stdout.write(`${inCode.size} routes and ${typesInCode.size} problem types checked\n`);
process.exit(failed ? 1 : 0);
