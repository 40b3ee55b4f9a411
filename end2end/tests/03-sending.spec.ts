import { test, expect, type Page } from '@playwright/test';
import { ADMIN, PEER, fillPeerSettings, hydrated, received, signIn } from './helpers';

async function openSmtpPage(page: Page) {
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  await hydrated(page);
}

test.describe.serial('Send Test Email', () => {
  test('custom STARTTLS + PLAIN settings deliver the test mail to the server', async ({ page }) => {
    const before = received().length;
    await openSmtpPage(page);
    await fillPeerSettings(page, PEER.password);
    await page.getByRole('button', { name: 'Send Test Email' }).click();
    await expect(page.getByRole('status')).toHaveText(`Test email sent to ${ADMIN.email}`, { timeout: 20_000 });
    const mail = received().slice(before);
    expect(mail).toHaveLength(1);
    expect(mail[0].to).toEqual([ADMIN.email]);
    expect(mail[0].from).toBe('mail@example.com');
    expect(mail[0].tls).toBe(true);
    expect(mail[0].data).toContain('Subject: Mailroom E2E Mail Test');
    expect(mail[0].data).toContain('Mailroom E2E mail is working!');
  });

  test('a wrong password shows the 535 failure and its hint under the buttons', async ({ page }) => {
    const before = received().length;
    await openSmtpPage(page);
    await fillPeerSettings(page, 'not the password');
    await page.getByRole('button', { name: 'Send Test Email' }).click();
    const status = page.getByRole('status');
    await expect(status).toContainText('Authentication rejected: 535', { timeout: 20_000 });
    await expect(status).toContainText('check the Username and Password');
    expect(received().length).toBe(before);
  });

  test('in default mode the test mail appears under Mailbox', async ({ page }) => {
    await openSmtpPage(page);
    await page.getByLabel('Use default email settings').check();
    await expect(page.getByText('mail does not leave the instance')).toBeVisible();
    await page.getByRole('button', { name: 'Send Test Email' }).click();
    await expect(page.getByRole('status')).toHaveText(`Test email sent to ${ADMIN.email}`, { timeout: 20_000 });

    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Mailbox' }).click();
    await expect(page.getByRole('heading', { name: 'Mailbox', level: 1 })).toBeVisible();
    const row = page.getByRole('row').filter({ hasText: 'Mailroom E2E Mail Test' }).first();
    await expect(row).toContainText(ADMIN.email);
    await row.getByRole('link', { name: 'Mailroom E2E Mail Test' }).click();
    await expect(page.getByRole('heading', { name: 'Mailroom E2E Mail Test', level: 1 })).toBeVisible();
    await expect(page.getByText('Mailroom E2E mail is working!')).toBeVisible();
  });
});
