// Regenerates the README screenshots against a running server:
//   MAILROOM_URL=http://127.0.0.1:3000 ADMIN_EMAIL=... ADMIN_PASSWORD=... node screenshots.js
const { chromium } = require('@playwright/test');

(async () => {
  const base = process.env.MAILROOM_URL ?? 'http://127.0.0.1:3000';
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 1050 } });
  await page.goto(`${base}/login`);
  await page.locator('body[data-hydrated="true"]').waitFor({ state: 'attached' });
  await page.getByLabel('Email').fill(process.env.ADMIN_EMAIL);
  await page.getByLabel('Password').fill(process.env.ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/admin\/smtp/);
  await page.locator('body[data-hydrated="true"]').waitFor({ state: 'attached' });
  await page.getByLabel('Use custom email settings').check();
  await page.getByLabel('Email Server').fill('smtp.example.com');
  await page.getByLabel('From', { exact: true }).fill('Mailroom <mail@example.com>');
  await page.getByLabel('TLS/SSL', { exact: true }).check();
  await page.getByLabel('Username').fill('mailer@example.com');
  await page.screenshot({ path: '../docs/smtp-custom.png', fullPage: true });
  await page.getByLabel('From', { exact: true }).fill('Mailroom, Inc. <mail@example.com>');
  await page.screenshot({ path: '../docs/smtp-from-error.png', fullPage: true });
  await browser.close();
})();
