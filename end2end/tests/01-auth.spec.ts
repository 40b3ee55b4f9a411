import { test, expect } from '@playwright/test';
import { ADMIN, USER, hydrated, signIn } from './helpers';

test('an admin signs in and sees Platform > SMTP', async ({ page }) => {
  await signIn(page, ADMIN);
  await expect(page).toHaveURL(/\/admin\/smtp$/);
  const sidebar = page.getByRole('navigation', { name: 'Admin' });
  await expect(sidebar.getByRole('heading', { name: 'Platform' })).toBeVisible();
  await expect(sidebar.getByRole('link', { name: 'SMTP', exact: true })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'SMTP', level: 1 })).toBeVisible();
});

test('a user who is not an admin gets the 403 page', async ({ page }) => {
  await signIn(page, USER);
  await expect(page).toHaveURL(/\/$/);
  const response = await page.goto('/admin/smtp');
  expect(response?.status()).toBe(403);
  await expect(page.getByRole('heading', { name: /Admins only/ })).toBeVisible();
  await expect(page.getByRole('navigation', { name: 'Admin' })).toHaveCount(0);
});

test('a wrong password shows the one generic message', async ({ page }) => {
  await signIn(page, { email: ADMIN.email, password: 'not the password' });
  await expect(page.getByRole('alert')).toHaveText('Wrong email or password.');
  await signIn(page, { email: 'nobody@example.com', password: 'not the password' });
  await expect(page.getByRole('alert')).toHaveText('Wrong email or password.');
  await expect(page).toHaveURL(/\/login$/);
});

test('a signed-out visitor is sent to the sign-in page', async ({ page }) => {
  await page.goto('/admin/smtp');
  await expect(page).toHaveURL(/\/login$/);
  await hydrated(page);
  await expect(page.getByRole('button', { name: 'Sign in' })).toBeVisible();
});
