import { test, expect, type Page } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADMIN, hydrated, signIn, type Received } from './helpers';

const base = Number(process.env.MAILROOM_E2E_PORT ?? 3210);
const stateDir = path.join(os.tmpdir(), `mailroom-e2e-${base}`);

function mailIn(file: string): Received[] {
  const mbox = path.join(stateDir, file);
  if (!fs.existsSync(mbox)) return [];
  return fs.readFileSync(mbox, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function customSettings(page: Page, port: number) {
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  await hydrated(page);
  await page.getByLabel('Use custom email settings').check();
  await page.getByLabel('Email Server').fill('localhost');
  await page.getByLabel('From', { exact: true }).fill('Mailroom E2E <mail@example.com>');
  if (!(await page.getByLabel('TLS/SSL', { exact: true }).isChecked())) {
    await page.getByLabel('TLS/SSL', { exact: true }).check();
  }
  await page.getByLabel('TLS mode').selectOption({ label: 'STARTTLS' });
  await page.getByLabel('Port', { exact: true }).fill(String(port));
}

test.describe.serial('Beyond passwords and public CAs', () => {
  test('a Google service account key sends the test mail through XOAUTH2, and is saved write-only', async ({ page }) => {
    const key = fs.readFileSync(path.join(stateDir, 'service-account.json'), 'utf8');
    const account = JSON.parse(key).client_email as string;
    const before = mailIn('mbox-google.jsonl').length;
    await customSettings(page, base + 17);
    await page.getByLabel('Authentication type').selectOption({ label: 'Google service account' });
    await page.getByLabel('Send as').fill('sender@example.com');
    // The downloaded file, chosen with the file picker, fills the field as a paste would.
    await page.getByLabel('Or choose the downloaded key file').setInputFiles(path.join(stateDir, 'service-account.json'));
    await expect(page.getByLabel('Service account key (JSON)')).toHaveValue(key);
    await page.getByRole('button', { name: 'Send Test Email' }).click();
    await expect(page.getByRole('status')).toHaveText(`Test email sent to ${ADMIN.email}`, { timeout: 20_000 });
    const mail = mailIn('mbox-google.jsonl').slice(before);
    expect(mail).toHaveLength(1);
    expect(mail[0].to).toEqual([ADMIN.email]);
    expect(mail[0].tls).toBe(true);

    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('status')).toHaveText('Settings saved', { timeout: 20_000 });
    await expect(page.getByLabel('Service account key (JSON)')).toHaveValue('');
    await expect(page.getByText(`A key for ${account} is saved.`)).toBeVisible();
    await page.reload();
    await hydrated(page);
    await expect(page.getByLabel('Authentication type')).toHaveValue('google');
    await expect(page.getByText(`A key for ${account} is saved.`)).toBeVisible();
    expect(await page.content()).not.toContain(JSON.parse(key).private_key.split('\n')[1]);
  });

  test('a private CA pasted on the page makes its relay trusted, with no restart', async ({ page }) => {
    const ca = fs.readFileSync(path.join(stateDir, 'private-ca.pem'), 'utf8');
    const before = mailIn('mbox-private.jsonl').length;
    await customSettings(page, base + 18);
    await page.getByLabel('Authentication type').selectOption({ label: 'Basic Authentication' });
    await page.getByLabel('Username').fill('');
    await page.getByRole('button', { name: 'Send Test Email' }).click();
    const status = page.getByRole('status');
    await expect(status).toContainText('Invalid certificate', { timeout: 20_000 });
    await expect(status).toContainText('Trusted CA certificates (PEM)');

    await page.getByLabel('Trusted CA certificates (PEM)').fill(ca);
    await expect(page.getByRole('list', { name: 'Pasted certificates' }))
      .toContainText('CN=Mailroom E2E Private CA, issued by CN=Mailroom E2E Private CA, expires');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(status).toHaveText('Settings saved', { timeout: 20_000 });
    await expect(page.getByRole('list', { name: 'Saved certificates' })).toContainText('CN=Mailroom E2E Private CA');

    await page.getByRole('button', { name: 'Send Test Email' }).click();
    await expect(status).toHaveText(`Test email sent to ${ADMIN.email}`, { timeout: 20_000 });
    const mail = mailIn('mbox-private.jsonl').slice(before).filter((m) => m.subject.endsWith('Mail Test'));
    expect(mail).toHaveLength(1);
    expect(mail[0].tls).toBe(true);
  });

  test('a pasted file that is not PEM is named under its field while typing', async ({ page }) => {
    await customSettings(page, base + 18);
    const field = page.getByLabel('Trusted CA certificates (PEM)');
    await field.fill('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
    await expect(field).toHaveAttribute('aria-invalid', 'true');
    await expect(page.getByText('Certificate 1 cannot be read (not an X.509 certificate).')).toBeVisible();
  });
});
