import { test, expect, type Browser } from '@playwright/test';
import { ADMIN, hydrated, linkInMail, signIn } from './helpers';

const NEWBIE = { name: 'Nia Newbie', email: 'nia@example.com', password: 'nia picked this one', later: 'nia reset it later' };

async function freshPage(browser: Browser) {
  return (await browser.newContext()).newPage();
}

test.describe.serial('mail the instance sends', () => {
  test('an admin creates a user, the invitation arrives, and the new user sets a password and signs in', async ({ page, browser }) => {
    await signIn(page, ADMIN);
    await expect(page).toHaveURL(/\/admin\/smtp$/);
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Users' }).click();
    await expect(page.getByRole('heading', { name: 'Users', level: 1 })).toBeVisible();
    await hydrated(page);
    await page.getByLabel('Name').fill(NEWBIE.name);
    await page.getByLabel('Email').fill(NEWBIE.email);
    await page.getByLabel('Role').selectOption({ label: 'User' });
    await page.getByRole('button', { name: 'Create user' }).click();
    await expect(page.getByRole('status')).toHaveText(`Invitation sent to ${NEWBIE.email}`);
    await expect(page.getByRole('row').filter({ hasText: NEWBIE.email })).toContainText('invited');

    const link = await linkInMail(NEWBIE.email, 'You are invited to Mailroom E2E');
    const newbie = await freshPage(browser);
    await newbie.goto(link);
    await hydrated(newbie);
    await expect(newbie.getByRole('heading', { name: 'Set your password' })).toBeVisible();
    await newbie.getByLabel('New password').fill(NEWBIE.password);
    await newbie.getByRole('button', { name: 'Set password' }).click();
    await expect(newbie).toHaveURL(/\/login\?password=set$/);
    await expect(newbie.getByRole('status')).toHaveText('Password set. Sign in with your new password.');
    await signIn(newbie, NEWBIE);
    await expect(newbie).toHaveURL(/\/$/);
    await expect(newbie.getByText(`Signed in as ${NEWBIE.name}`)).toBeVisible();

    // The link works once.
    const again = await freshPage(browser);
    await again.goto(link);
    await hydrated(again);
    await again.getByLabel('New password').fill('someone else tries');
    await again.getByRole('button', { name: 'Set password' }).click();
    await expect(again.getByRole('alert')).toContainText('expired or was already used');

    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Outbox' }).click();
    await expect(page.getByRole('heading', { name: 'Outbox', level: 1 })).toBeVisible();
    await expect(page.getByRole('row').filter({ hasText: 'You are invited' }).first()).toContainText('sent');
  });

  test('Forgot password? sends a one-time link that sets a new password', async ({ browser }) => {
    const page = await freshPage(browser);
    await page.goto('/login');
    await hydrated(page);
    await page.getByRole('link', { name: 'Forgot password?' }).click();
    await expect(page.getByRole('heading', { name: 'Forgot password?' })).toBeVisible();
    await hydrated(page);
    await page.getByLabel('Email').fill(NEWBIE.email);
    await page.getByRole('button', { name: 'Send reset link' }).click();
    await expect(page.getByRole('status')).toContainText('If an account exists for that address');

    const link = await linkInMail(NEWBIE.email, 'Reset your Mailroom E2E password');
    await page.goto(link);
    await hydrated(page);
    await page.getByLabel('New password').fill(NEWBIE.later);
    await page.getByRole('button', { name: 'Set password' }).click();
    await expect(page).toHaveURL(/\/login\?password=set$/);
    await signIn(page, { email: NEWBIE.email, password: NEWBIE.later });
    await expect(page).toHaveURL(/\/$/);
  });
});
