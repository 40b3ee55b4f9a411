import { test, expect, type Page } from '@playwright/test';
import { hydrated } from '../tests/helpers';
import { CLUSTER } from './ports';

const icon = (page: Page) => page.getByRole('img', { name: 'SMTP has errors' });

async function openSmtpPage(page: Page, base: string) {
  await page.goto(`${base}/admin/smtp`);
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  await hydrated(page);
}

/** Custom settings for the cluster's aiosmtpd peer (plaintext, AUTH), saved with `password`. */
async function saveSettings(page: Page, password: string) {
  await page.getByLabel('Use custom email settings').check();
  await page.getByLabel('Email Server').fill('127.0.0.1');
  await page.getByLabel('From', { exact: true }).fill('Mailroom E2E <mail@example.com>');
  if (await page.getByLabel('TLS/SSL', { exact: true }).isChecked()) {
    await page.getByLabel('TLS/SSL', { exact: true }).uncheck();
  }
  await page.getByLabel('Port', { exact: true }).fill(String(CLUSTER.smtp));
  await page.getByLabel('Authentication type').selectOption({ label: 'Basic Authentication' });
  await page.getByLabel('Username').fill(CLUSTER.smtpUser);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Settings saved');
}

test('a bad password saved on node C reaches admin pages on node A and through HAProxy live, and clears live', async ({ browser }) => {
  // One browser: the session cookie set through HAProxy is sent to every node (cookies are
  // per host, not per port), and each node finds the session in the database.
  const context = await browser.newContext();
  const viaProxy = await context.newPage();
  await viaProxy.goto(`${CLUSTER.proxyUrl}/login`);
  await hydrated(viaProxy);
  await viaProxy.getByLabel('Email').fill(CLUSTER.admin.email);
  await viaProxy.getByLabel('Password').fill(CLUSTER.admin.password);
  await viaProxy.getByRole('button', { name: 'Sign in' }).click();
  await expect(viaProxy).toHaveURL(/\/admin\/smtp$/);
  await hydrated(viaProxy);
  const onA = await context.newPage();
  await openSmtpPage(onA, CLUSTER.nodeUrl('a'));
  const onC = await context.newPage();
  await openSmtpPage(onC, CLUSTER.nodeUrl('c'));

  await saveSettings(onC, CLUSTER.smtpPassword);
  for (const page of [viaProxy, onA]) {
    await expect(page.getByRole('alert')).toHaveCount(0, { timeout: 20_000 });
    await expect(icon(page)).toHaveCount(0);
  }

  await saveSettings(onC, 'not the password');
  // Neither page reloads: node C's check (and every node's own) reaches them through the
  // database's live query and each node's status stream.
  for (const page of [viaProxy, onA]) {
    await expect(page.getByRole('alert')).toContainText('SMTP is failing: Authentication rejected: 535', { timeout: 20_000 });
    await expect(page.getByRole('alert')).toContainText('check the Username and Password');
    await expect(icon(page)).toBeVisible();
  }

  await saveSettings(onC, CLUSTER.smtpPassword);
  for (const page of [viaProxy, onA]) {
    await expect(page.getByRole('alert')).toHaveCount(0, { timeout: 20_000 });
    await expect(icon(page)).toHaveCount(0);
  }
  await context.close();
});
