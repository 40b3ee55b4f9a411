import { test, expect, type Browser, type Page } from '@playwright/test';
import { ADMIN, PEER, fillPeerSettings, hydrated } from './helpers';


async function adminPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto('/login');
  await hydrated(page);
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  await hydrated(page);
  return page;
}

async function saveSettings(page: Page, password: string) {
  await fillPeerSettings(page, password);
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('status')).toHaveText('Settings saved');
}

test('an SMTP failure reaches every open admin page live, and clears live', async ({ browser }) => {
  const a = await adminPage(browser);
  const b = await adminPage(browser);
  const icon = (page: Page) => page.getByRole('img', { name: 'SMTP has errors' });
  // Start from working settings, whatever earlier tests saved.
  await saveSettings(a, PEER.password);
  await expect(b.getByRole('alert')).toHaveCount(0, { timeout: 20_000 });
  await expect(icon(b)).toHaveCount(0);

  await saveSettings(a, 'not the password');
  // B never reloads: the stream brings the failure.
  await expect(b.getByRole('alert')).toContainText('SMTP is failing: Authentication rejected: 535', { timeout: 20_000 });
  await expect(b.getByRole('alert')).toContainText('check the Username and Password');
  await expect(icon(b)).toBeVisible();
  await expect(icon(a)).toBeVisible();
  await expect(a.getByRole('alert')).toBeVisible();

  await b.reload();
  await hydrated(b);
  await expect(b.getByRole('alert')).toContainText('SMTP is failing');
  await expect(icon(b)).toBeVisible();

  await saveSettings(a, PEER.password);
  for (const page of [a, b]) {
    await expect(page.getByRole('alert')).toHaveCount(0, { timeout: 20_000 });
    await expect(icon(page)).toHaveCount(0);
  }
  await a.reload();
  await hydrated(a);
  await expect(a.getByRole('alert')).toHaveCount(0);
  await expect(icon(a)).toHaveCount(0);
});
