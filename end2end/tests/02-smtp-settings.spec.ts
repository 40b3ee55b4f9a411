import { test, expect, type Page } from '@playwright/test';
import { ADMIN, hydrated, signIn } from './helpers';

async function openSmtpPage(page: Page) {
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  await hydrated(page);
  await expect(page.getByRole('heading', { name: 'SMTP', level: 1 })).toBeVisible();
}

test.describe.serial('the SMTP settings page', () => {
  test('the From message appears and disappears while typing', async ({ page }) => {
    await openSmtpPage(page);
    await page.getByLabel('Use custom email settings').check();
    const from = page.getByLabel('From', { exact: true });
    await from.fill('Mail, Room <mail@example.com>');
    await expect(from).toHaveAttribute('aria-invalid', 'true');
    const messageId = (await from.getAttribute('aria-describedby'))!.split(' ')[0];
    const message = page.locator(`[id="${messageId}"]`);
    await expect(message).toContainText("',' at position 5 is not allowed in the name");

    await from.fill('Mail Room <mail@example.com>');
    await expect(from).not.toHaveAttribute('aria-invalid', 'true');
    await expect(message).toBeEmpty();

    await from.pressSequentially(';');
    await expect(message).toContainText('Only one address is allowed');
  });

  test('the TLS/SSL checkbox reveals its selects and the port follows the TLS mode', async ({ page }) => {
    await openSmtpPage(page);
    await page.getByLabel('Use custom email settings').check();
    const port = page.getByLabel('Port', { exact: true });
    await expect(page.getByLabel('TLS/SSL version')).toHaveCount(0);
    await expect(port).toHaveValue('25');

    await page.getByLabel('TLS/SSL', { exact: true }).check();
    const version = page.getByLabel('TLS/SSL version');
    await expect(version).toBeVisible();
    await expect(version.locator('option')).toHaveText(['TLS 1.2 (recommended)', 'TLS 1.3']);
    await expect(page.getByLabel('TLS mode')).toBeVisible();
    await expect(port).toHaveValue('587');

    await page.getByLabel('TLS mode').selectOption({ label: 'Implicit TLS' });
    await expect(port).toHaveValue('465');

    await port.fill('2525');
    await page.getByLabel('TLS mode').selectOption({ label: 'STARTTLS' });
    await expect(port).toHaveValue('2525');

    await page.getByLabel('TLS/SSL', { exact: true }).uncheck();
    await expect(page.getByLabel('TLS/SSL version')).toHaveCount(0);
  });

  test('the authentication type shows the right fields', async ({ page }) => {
    await openSmtpPage(page);
    await page.getByLabel('Use custom email settings').check();
    const auth = page.getByLabel('Authentication type');
    await expect(auth.locator('option')).toHaveText(['Basic Authentication', 'OAuth 2.0', 'Google service account']);
    await expect(page.getByLabel('Username')).toBeVisible();
    await expect(page.getByLabel('Password', { exact: true })).toBeVisible();
    await expect(page.getByLabel('Client ID')).toHaveCount(0);

    await auth.selectOption({ label: 'OAuth 2.0' });
    await expect(page.getByLabel('Username')).toBeVisible();
    await expect(page.getByLabel('Client ID')).toBeVisible();
    await expect(page.getByLabel('Client Secret')).toBeVisible();
    await expect(page.getByLabel('Token URL')).toBeVisible();
    await expect(page.getByLabel('Scope')).toBeVisible();
    await expect(page.getByLabel('Password', { exact: true })).toHaveCount(0);

    await page.getByLabel('Token URL').fill('http://login.example.com/token');
    await expect(page.getByLabel('Token URL')).toHaveAttribute('aria-invalid', 'true');

    await auth.selectOption({ label: 'Google service account' });
    await expect(page.getByLabel('Send as')).toBeVisible();
    await expect(page.getByLabel('Service account key (JSON)')).toBeVisible();
    await expect(page.getByLabel('Username')).toHaveCount(0);
    await expect(page.getByLabel('Client ID')).toHaveCount(0);
    await page.getByLabel('Service account key (JSON)').fill('{"installed": {}}');
    await expect(page.getByLabel('Service account key (JSON)')).toHaveAttribute('aria-invalid', 'true');

    await auth.selectOption({ label: 'Basic Authentication' });
    await expect(page.getByLabel('Client ID')).toHaveCount(0);
    await expect(page.getByLabel('Password', { exact: true })).toBeVisible();
  });

  test('saved values persist, the password shows as saved and blank, and a new port needs it again', async ({ page }) => {
    await openSmtpPage(page);
    await page.getByLabel('Use custom email settings').check();
    await page.getByLabel('Email Server').fill('localhost');
    await page.getByLabel('From', { exact: true }).fill('Mailroom E2E <mail@example.com>');
    await page.getByLabel('TLS/SSL', { exact: true }).check();
    await page.getByLabel('Username').fill('mailer');
    await page.getByLabel('Password', { exact: true }).fill('a password typed in e2e');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('status')).toHaveText('Settings saved');

    await page.reload();
    await hydrated(page);
    await expect(page.getByLabel('Use custom email settings')).toBeChecked();
    await expect(page.getByLabel('Email Server')).toHaveValue('localhost');
    await expect(page.getByLabel('From', { exact: true })).toHaveValue('Mailroom E2E <mail@example.com>');
    await expect(page.getByLabel('Port', { exact: true })).toHaveValue('587');
    await expect(page.getByLabel('TLS/SSL', { exact: true })).toBeChecked();
    await expect(page.getByLabel('Username')).toHaveValue('mailer');
    const password = page.getByLabel('Password', { exact: true });
    await expect(password).toHaveValue('');
    await expect(password).toHaveAttribute('placeholder', 'Saved – leave blank to keep');
    expect(await page.content()).not.toContain('a password typed in e2e');

    await page.getByLabel('Port', { exact: true }).fill('2525');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('status')).toHaveText('Re-enter the password: the port changed');
    await expect(password).toHaveAttribute('aria-invalid', 'true');

    await password.fill('a password typed in e2e');
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('status')).toHaveText('Settings saved');
  });
});
