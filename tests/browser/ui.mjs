// The admin UI in headless Chromium (the system's, no download): log in, create a domain with
// DKIM, a mailbox and an alias, read the DKIM record on the domain's DNS page once the
// dkim_keys job has made the key, see the dashboard. A screenshot of each step goes to the
// artifacts directory. Run by tests/browser.rs:
//   node tests/browser/ui.mjs http://127.0.0.1:PORT
// with MODOBOX_UI_USER / MODOBOX_UI_PASSWORD (the superadmin, kept out of the arguments),
// MODOBOX_BIN + MODOBOX_CONFIG (to run the dkim_keys job), CHROMIUM (default
// /usr/bin/chromium) and ARTIFACTS (default target/browser-artifacts).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node ui.mjs BASE_URL');
  process.exit(2);
}
const user = process.env.MODOBOX_UI_USER ?? 'admin';
const password = process.env.MODOBOX_UI_PASSWORD;
if (!password) {
  console.error('MODOBOX_UI_PASSWORD is not set');
  process.exit(2);
}
const artifacts = process.env.ARTIFACTS ?? 'target/browser-artifacts';
mkdirSync(artifacts, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// A link of the main navigation (the pages have links of the same name elsewhere).
async function nav(page, name) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
}

let step = 0;
async function shot(page, name) {
  step += 1;
  const file = join(artifacts, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`step ${step}: ${name} (${file})`);
}

// Every visible form control has a label; every table a caption: the accessibility basics.
async function accessible(page) {
  const problems = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
      if (!el.labels || el.labels.length === 0) out.push(`unlabelled ${el.name || el.id}`);
    }
    for (const t of document.querySelectorAll('table')) {
      if (!t.querySelector('caption')) out.push('table without caption');
    }
    if (!document.querySelector('h1')) out.push('no h1');
    return out;
  });
  check(problems.length === 0, `${page.url()}: ${problems.join(', ')}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // Chromium's sandbox needs user namespaces a CI container or root may not have.
  args: ['--no-sandbox'],
});
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  // A CSP violation or a script error is a failure (the UI needs no JavaScript).
  // (Failed loads are judged by their responses below: a refused form answers 400 on purpose.)
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  page.on('response', (r) => {
    const refusedForm = r.status() === 400 && r.request().method() === 'POST';
    if (r.status() >= 400 && !refusedForm) errors.push(`${r.status()} ${r.url()}`);
  });
  page.on('pageerror', (e) => errors.push(String(e)));

  // 1. Log in.
  await page.goto(`${base}/login`);
  await accessible(page);
  await page.getByLabel('Username', { exact: true }).fill(user);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await shot(page, 'login');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${base}/`);
  check(await page.getByRole('heading', { name: 'Dashboard' }).isVisible(), 'dashboard after login');

  // 2. A domain with DKIM on.
  await nav(page, 'Domains');
  await page.getByRole('link', { name: 'New domain', exact: true }).click();
  await accessible(page);
  await page.getByLabel('Name', { exact: true }).fill('browser.test');
  await page.getByLabel('Domain quota (MB)', { exact: true }).fill('0');
  await page.getByLabel('Default mailbox quota (MB)', { exact: true }).fill('0');
  await page.getByLabel('Sign outgoing mail with DKIM', { exact: true }).check();
  await page.getByLabel('Key length', { exact: true }).selectOption('1024');
  await shot(page, 'domain-form');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL(`${base}/domains/browser.test`);
  check(await page.getByText('key is not generated yet').isVisible(), 'DKIM pending notice');
  await shot(page, 'domain-created');

  // 3. A mailbox, first refused (short password, the error next to the field), then made.
  await nav(page, 'Accounts');
  await page.getByRole('link', { name: 'New account' }).click();
  await accessible(page);
  await page.getByLabel('Username', { exact: true }).fill('alice@browser.test');
  await page.getByLabel('Password (8 to 128 characters)', { exact: true }).fill('short');
  await page.getByLabel('Password again', { exact: true }).fill('short');
  await page.getByLabel('Mailbox quota (MB)', { exact: true }).fill('50');
  await page.getByRole('button', { name: 'Create' }).click();
  const pwError = page.locator('#e-password');
  check(await pwError.isVisible(), 'password error shown');
  check((await page.getByLabel('Password (8 to 128 characters)', { exact: true }).getAttribute('aria-invalid')) === 'true', 'aria-invalid');
  await shot(page, 'mailbox-refused');
  await page.getByLabel('Password (8 to 128 characters)', { exact: true }).fill('alice password 1');
  await page.getByLabel('Password again', { exact: true }).fill('alice password 1');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL(`${base}/accounts/alice@browser.test`);
  check(await page.getByText('0.0 of 50 MB used').isVisible(), 'quota use shown');
  await shot(page, 'mailbox-created');

  // 4. An alias to it.
  await nav(page, 'Aliases');
  await page.getByRole('link', { name: 'New alias' }).click();
  await accessible(page);
  await page.getByLabel('Address', { exact: true }).fill('team@browser.test');
  await page.getByLabel('Recipients', { exact: true }).fill('alice@browser.test\nboss@elsewhere.example');
  await page.getByLabel('Description', { exact: true }).fill('the team');
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL(`${base}/aliases`);
  const row = page.getByRole('row', { name: /team@browser\.test/ });
  check((await row.textContent()).includes('boss@elsewhere.example'), 'alias row with its recipients');
  await shot(page, 'alias-created');

  // 5. The DKIM key: the job makes it, the DNS page shows the record to publish.
  if (process.env.MODOBOX_BIN) {
    const out = execFileSync(process.env.MODOBOX_BIN, ['--distro', 'debian:12', 'task', 'run', 'dkim_keys'], {
      env: { ...process.env },
      encoding: 'utf8',
    });
    console.log(`dkim_keys: ${out.trim()}`);
  }
  await page.goto(`${base}/domains/browser.test`);
  await accessible(page);
  const dkimRow = page.locator('table.records tr', { hasText: 'modoboa._domainkey.browser.test.' });
  check((await dkimRow.count()) === 1, 'one DKIM record');
  const dkim = await dkimRow.locator('code.value').textContent();
  check(/v=DKIM1;.*k=rsa;.*p=[A-Za-z0-9+/]{40}/s.test(dkim.replace(/"\s*"/g, '')), `DKIM record: ${dkim}`);
  console.log(`DKIM record: ${dkim.slice(0, 80)}…`);
  check((await page.locator('#zone').textContent()).includes('modoboa._domainkey.browser.test.'), 'zone text');
  await page.locator('#dns').scrollIntoViewIfNeeded();
  await shot(page, 'domain-dns');

  // 6. The statistics of example.test (parsed from a real mail log before the test): both
  // graphs are drawn by the server and load as images.
  await nav(page, 'Statistics');
  await page.getByLabel('Domain').fill('example.test');
  await page.getByLabel('Period').selectOption('week');
  await page.getByRole('button', { name: 'Show' }).click();
  await accessible(page);
  const graphs = page.locator('figure img');
  check((await graphs.count()) === 2, 'two graphs');
  for (const img of await graphs.all()) {
    await img.scrollIntoViewIfNeeded();
    const width = await img.evaluate(async (el) => { await el.decode(); return el.naturalWidth; });
    check(width > 0, `graph loaded: ${await img.getAttribute('src')}`);
  }
  check((await page.locator('table', { hasText: 'Totals for example.test' }).count()) === 1, 'totals table');
  await shot(page, 'statistics');

  // 7. The dashboard, and a narrow screen (the layout reflows, nothing needs a script).
  await nav(page, 'Dashboard');
  await accessible(page);
  check(await page.getByRole('heading', { name: /Health/ }).isVisible(), 'health section');
  await shot(page, 'dashboard');
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`${base}/domains`);
  await shot(page, 'domains-narrow');

  // Keyboard: the skip link is the first stop and is shown when focused.
  await page.keyboard.press('Tab');
  check(await page.getByRole('link', { name: 'Skip to content' }).evaluate((a) => a === document.activeElement), 'skip link first');

  check(errors.length === 0, `browser errors: ${errors.join('; ')}`);
  console.log('browser UI test: ok');
} finally {
  await browser.close();
}
