// Drives GET /dashboard in Debian's headless Chromium (playwright-core, no downloaded browser) and scans it with
// axe-core. Run by tests/integration/dashboard_test.cpp, which plants the requests; it passes:
//   RIGHTSD_URL         the daemon's base URL (127.0.0.1 only)
//   RIGHTSD_TOKEN       a viewer token
//   RIGHTSD_EXPECT      JSON: {"open": n, "at_risk": n, "breached": n, "on_track": n, "drill": "<request id>",
//                       "systems": ["crm", ...]}
//   RIGHTSD_SCREENSHOT  where to save a PNG of the page
//   RIGHTSD_CHROMIUM    the browser (default /usr/bin/chromium)
// Prints one JSON line per check and {"ok": true|false, ...} last; exits 0 only when everything passed.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const base = process.env.RIGHTSD_URL;
const token = process.env.RIGHTSD_TOKEN;
const expect = JSON.parse(process.env.RIGHTSD_EXPECT || '{}');
const screenshot = process.env.RIGHTSD_SCREENSHOT;
if (!base || !/^http:\/\/127\.0\.0\.1:\d+$/.test(base) || !token) {
  console.log(JSON.stringify({ ok: false, error: 'RIGHTSD_URL (http://127.0.0.1:port) and RIGHTSD_TOKEN are required' }));
  process.exit(2);
}

const failures = [];
function check(name, ok, detail) {
  console.log(JSON.stringify({ check: name, ok: !!ok, detail }));
  if (!ok) failures.push(name);
}

let server = null;
let browser = null;
// A hard stop: whatever hangs, the browser (its own process group, started by playwright) goes, then node.
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: 'watchdog: 45 s elapsed' }));
  const pid = server ? server.process().pid : null;
  if (pid) { try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } }
  process.exit(3);
}, 45000);

try {
  // launchServer() gives the browser a fresh temporary profile (--user-data-dir), removed on close, and its pid.
  server = await chromium.launchServer({
    executablePath: process.env.RIGHTSD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    chromiumSandbox: false,
    timeout: 20000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-dev-shm-usage'],
  });
  browser = await chromium.connect(server.wsEndpoint(), { timeout: 10000 });
  console.log(JSON.stringify({ browser: browser.version(), pid: server.process().pid }));
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  const consoleErrors = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers()['authorization'] || null }));
  // Nothing may leave 127.0.0.1.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base + '/')) return route.continue();
    consoleErrors.push(`blocked off-origin request: ${url}`);
    return route.abort();
  });

  const response = await page.goto(base + '/dashboard', { waitUntil: 'load' });
  check('page loads without a token', response.status() === 200, response.status());
  check('page has one h1 and a main landmark',
        (await page.locator('h1').count()) === 1 && (await page.locator('main').count()) === 1);

  // The token: typed once, kept in sessionStorage, sent as a bearer header, never in a URL.
  await page.getByLabel('Bearer token').fill(token);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.locator('#board:not([hidden])').waitFor();
  await page.locator('#status', { hasText: 'Dashboard updated' }).waitFor();
  const stored = await page.evaluate(() => sessionStorage.getItem('rightsd.dashboard.token'));
  check('token kept in sessionStorage', stored === token);
  check('token field emptied after use', (await page.getByLabel('Bearer token').inputValue()) === '');

  const tile = async (key) => (await page.locator(`[data-value="${key}"]`).textContent()).trim();
  for (const key of ['open', 'at_risk', 'breached', 'on_track']) {
    if (expect[key] === undefined) continue;
    const shown = await tile(key);
    check(`tile ${key} shows ${expect[key]}`, shown === String(expect[key]), shown);
  }
  // Type and system breakdowns.
  const typeRows = await page.locator('#by-type tbody tr').allTextContents();
  check('by-type table has the five types', typeRows.length === 5, typeRows);
  const systemNames = await page.locator('#by-system tbody th').allTextContents();
  for (const s of expect.systems || []) check(`by-system table lists ${s}`, systemNames.includes(s), systemNames);
  // The chart and its table equivalent say the same thing.
  const bars = await page.locator('#chart rect.bar').count();
  check('chart draws bars', bars > 0, bars);
  const label = await page.locator('#chart').getAttribute('aria-labelledby');
  const desc = (await page.locator('#chart-desc').textContent()) || '';
  check('chart is an img with a title and description', label === 'chart-title chart-desc' && desc.includes('overdue'), desc);
  await page.getByText('Requests due per day as a table').click();
  const dueRows = await page.locator('#due-table tbody tr').count();
  check('table equivalent has overdue + 45 days', dueRows === 46, dueRows);
  const overdueCell = (await page.locator('#due-table tbody tr').first().locator('td').textContent()).trim();
  check('table shows the breached request as overdue', overdueCell === String(expect.breached), overdueCell);

  // The attention list shows the at-risk and the breached request; the drill-down opens one by keyboard.
  const attention = await page.locator('#requests tbody tr').count();
  check('attention list has the at-risk and breached requests', attention === expect.at_risk + expect.breached, attention);
  const row = page.locator(`#requests tbody tr[data-id="${expect.drill}"]`);
  const detailsButton = row.getByRole('button', { name: /Details/ });
  await detailsButton.focus();
  await page.keyboard.press('Enter');
  await page.locator('#detail:not([hidden])').waitFor();
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  check('drill-down moves focus to its heading', focused === 'detail-h', focused);
  const taskSystems = await page.locator('#detail-tasks tbody th').allTextContents();
  check('drill-down lists the tasks', taskSystems.length > 0 && (expect.systems || []).every((s) => taskSystems.includes(s)), taskSystems);
  const historyRows = await page.locator('#detail-history tbody tr').allTextContents();
  check('drill-down lists the history', historyRows.some((h) => h.includes('created')), historyRows);
  const bodyText = await page.locator('body').innerText();
  check('no identity value on the page', !(expect.identity_values || []).some((v) => bodyText.includes(v)));
  await page.screenshot({ path: screenshot, fullPage: true });

  // axe-core, WCAG 2.0/2.1/2.2 A and AA, with the detail and the table open.
  // The page's CSP forbids inline script, so axe is evaluated through the DevTools protocol instead of a tag.
  const pageErrors = consoleErrors.slice();
  await page.evaluate(axeSource);
  const axe = await page.evaluate(async () => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
    resultTypes: ['violations'],
  }));
  const violations = axe.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  check('axe: no WCAG 2.2 AA violations', violations.length === 0, { violations, passes: axe.passes.length });

  // Escape closes the drill-down and focus returns to its button.
  await page.locator('#detail-h').focus();
  await page.keyboard.press('Escape');
  const back = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('data-open'));
  check('Escape closes the drill-down and returns focus', back === expect.drill, back);

  // Every API call carried the bearer header; no URL carried the token.
  const apiCalls = requests.filter((r) => new URL(r.url).pathname.startsWith('/v1/'));
  check('API calls send the bearer header', apiCalls.length > 0 && apiCalls.every((r) => r.auth === `Bearer ${token}`), apiCalls.length);
  check('no URL carries the token', requests.every((r) => !r.url.includes(token)));
  check('the page asked for no identity values', apiCalls.filter((r) => /\/v1\/requests\/[^/?]+/.test(r.url))
        .every((r) => r.url.includes('identity_values=omit')));
  check('no console errors or warnings', pageErrors.length === 0, pageErrors);
  await context.close();
} catch (e) {
  failures.push(`exception: ${e && e.message}`);
  console.log(JSON.stringify({ check: 'exception', ok: false, detail: String(e && e.stack) }));
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.close().catch(() => {});
  clearTimeout(watchdog);
}
console.log(JSON.stringify({ ok: failures.length === 0, failures }));
process.exit(failures.length === 0 ? 0 : 1);
