// The dashboard in a real browser, against a real stack behind nginx. Started by
// tests/e2e/tests/api/dashboard.rs, which passes everything it needs in the environment.
// Every wait is on a condition in the page (with a deadline), never on time.

import { chromium } from 'playwright-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('PLANTLINE_URL');
const machine = env('MACHINE_ID');
const gatewayToken = env('GATEWAY_TOKEN');
const shots = env('SCREENSHOT_DIR');
const login = (role) => ({ username: env(`${role}_USER`), password: env(`${role}_PASSWORD`) });
const DEADLINE = 10_000;
mkdirSync(shots, { recursive: true });

const step = (what) => console.log(`step: ${what}`);

async function postTemperature(value) {
  const now = new Date().toISOString();
  const res = await fetch(`${base}/api/v1/data/ingest`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gatewayToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ gateway_id: 'browser-test', timestamp: now,
      batch: [{ machine_id: machine, readings: [{ timestamp: now, temperature: value, pressure: 101.5, speed: 1450 }] }] }),
  });
  if (res.status !== 201) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
}

async function signIn(browser, role) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE);
  page.on('pageerror', (err) => { console.error(`page error (${role}): ${err.message}`); process.exitCode = 1; });
  await page.goto(`${base}/`);
  const { username, password } = login(role);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator(`tr.machine-row[data-machine-id="${machine}"]`).waitFor();
  return page;
}

async function expectAbsent(page, selector, why) {
  const count = await page.locator(selector).count();
  if (count !== 0) throw new Error(`${why}: found ${count} × ${selector}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let operator;
try {
  step('operator logs in and sees the fleet');
  operator = await signIn(browser, 'OPERATOR');
  await operator.locator('#who', { hasText: '(operator)' }).waitFor();
  await expectAbsent(operator, '[data-control="config-nav"]', 'an operator must not get config editing');
  await expectAbsent(operator, '[data-control="machine-create"]', 'an operator must not register machines');
  // The harness recorded the machine's Sparkplug edge node as having said it died.
  await operator.locator(`tr.machine-row[data-machine-id="${machine}"] td[data-online="false"]`, { hasText: 'offline' }).waitFor();

  step('operator opens the machine page; its stream goes live');
  await operator.locator(`tr.machine-row[data-machine-id="${machine}"] a`).click();
  await operator.locator('.chart[data-metric="temperature"] canvas').waitFor();
  await operator.locator('#live-status[data-state="live"]').waitFor();
  await expectAbsent(operator, '[data-control="machine-edit"]', 'an operator must not edit the registry');

  step('a reading posted now appears on the temperature chart and card');
  await postTemperature(66.5);
  await operator.locator('.chart[data-metric="temperature"][data-last-value="66.5"]').waitFor();
  await operator.locator('.card[data-metric="temperature"] .card-value', { hasText: '66.5' }).waitFor();

  step('an overheating reading opens a critical alert on the page');
  await postTemperature(95.5);
  await operator.locator('#machine-alerts tr.alert-row[data-metric="temperature"][data-severity="critical"]').waitFor();
  await expectAbsent(operator, '[data-control="ack"]', 'an operator must not acknowledge alerts');
  await operator.locator('.chart[data-metric="temperature"][data-last-value="95.5"]').waitFor();
  await operator.screenshot({ path: join(shots, 'operator-machine.png'), fullPage: true });

  step('the fleet shows the machine in critical colour');
  await operator.getByRole('link', { name: 'Fleet' }).first().click();
  await operator.locator(`tr.machine-row[data-machine-id="${machine}"][data-severity="critical"]`).waitFor();

  step('the edge node is born again: the open fleet page shows the machine online, live');
  // The harness watches for this file, then records the machine online and announces it.
  writeFileSync(join(shots, 'fleet-open'), '');
  await operator.locator(`tr.machine-row[data-machine-id="${machine}"] td[data-online="true"]`, { hasText: 'online' }).waitFor();
  writeFileSync(join(shots, 'fleet-online-seen'), '');
  await operator.screenshot({ path: join(shots, 'operator-fleet.png'), fullPage: true });

  step('a supervisor may acknowledge and edit the registry, not configure');
  const supervisor = await signIn(browser, 'SUPERVISOR');
  await expectAbsent(supervisor, '[data-control="config-nav"]', 'a supervisor must not get config editing');
  await supervisor.locator(`tr.machine-row[data-machine-id="${machine}"] a`).click();
  await supervisor.locator('[data-control="machine-edit"]').waitFor();
  await supervisor.locator('#machine-alerts [data-control="ack"]').first().click();
  await supervisor.locator('#machine-alerts tr.alert-row[data-metric="temperature"] .acked').waitFor();
  await supervisor.screenshot({ path: join(shots, 'supervisor-machine.png'), fullPage: true });

  step('a supervisor registers a machine with the plant\'s own sensor label');
  await supervisor.getByRole('link', { name: 'Fleet' }).first().click();
  const create = supervisor.locator('[data-control="machine-create"]');
  const vibrationName = `Shaker ${Date.now()}`;
  await create.locator('input[name="name"]').fill(vibrationName);
  await create.locator('input[name="location"]').fill('Test Floor');
  await create.locator('input[name="sensor_type"]').fill('Vibration');
  await create.getByRole('button', { name: 'Register' }).click();
  const registered = supervisor.locator('tr.machine-row', { hasText: vibrationName });
  await registered.locator('td.sensor-type', { hasText: /^Vibration$/ }).waitFor();
  await supervisor.reload();
  await supervisor.locator('tr.machine-row', { hasText: vibrationName }).locator('td.sensor-type', { hasText: /^Vibration$/ }).waitFor();

  step('management sees the settings with save controls');
  const manager = await signIn(browser, 'MANAGEMENT');
  await manager.locator('[data-control="config-nav"]').click();
  await manager.locator('tr[data-setting="max_temperature_threshold"] [data-control="config"]').waitFor();
  await manager.screenshot({ path: join(shots, 'management-settings.png'), fullPage: true });

  step('the API reference renders the merged OpenAPI document under the page policy');
  await manager.goto(`${base}/docs`);
  await manager.locator('.opblock-summary-path', { hasText: '/api/v1/data/ingest' }).first().waitFor();
  console.log('dashboard browser test passed');
} catch (err) {
  console.error(`FAILED: ${err.message}`);
  if (operator) await operator.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
