import { test, expect, type Browser, type BrowserContext, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADMIN, USER, hydrated } from './helpers';

// Every page, in both languages, under axe-core's WCAG 2.1 A and AA rules: no serious or
// critical violation. The per-page counts go to test-results/axe-summary.json.
const LANGUAGES = ['en', 'id'] as const;
type Language = (typeof LANGUAGES)[number];
const base = `http://127.0.0.1:${Number(process.env.MAILROOM_E2E_PORT ?? 3210)}`;
const summary: Record<string, { violations: number; serious: number; passes: number; rules: string[] }> = {};

async function contextIn(browser: Browser, language: Language, url = base): Promise<BrowserContext> {
  const context = await browser.newContext();
  await context.addCookies([{ name: 'i18n_pref_locale', value: language, url }]);
  return context;
}

/** Signs in by the fields' ids, whatever the page's language, and waits to land. */
async function signIn(page: Page, who: { email: string; password: string }, landing: RegExp) {
  await page.goto('/login');
  await hydrated(page);
  await page.locator('#email').fill(who.email);
  await page.locator('#password').fill(who.password);
  await page.locator('form button[type=submit]').click();
  await expect(page).toHaveURL(landing);
}

async function audit(page: Page, name: string, language: Language) {
  await hydrated(page);
  await expect(page.locator('html')).toHaveAttribute('lang', language);
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  summary[`${name} [${language}]`] = {
    violations: results.violations.length,
    serious: serious.length,
    passes: results.passes.length,
    rules: results.violations.map((v) => `${v.id} (${v.impact})`),
  };
  const described = serious.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  expect(described, `${name} [${language}]`).toEqual([]);
}

test('the audit is not vacuous: an unlabelled field and low contrast are caught', async ({ page }) => {
  await page.goto('/login');
  await hydrated(page);
  await page.evaluate(() => {
    const main = document.querySelector('main')!;
    main.insertAdjacentHTML('beforeend', '<input id="unlabelled"><p style="color:#eee;background:#fff">faint</p>');
  });
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  const ids = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id);
  expect(ids).toEqual(expect.arrayContaining(['label', 'color-contrast']));
});

test.afterAll(() => {
  fs.mkdirSync(path.join(__dirname, '..', 'test-results'), { recursive: true });
  fs.writeFileSync(path.join(__dirname, '..', 'test-results', 'axe-summary.json'), JSON.stringify(summary, null, 2));
});

for (const language of LANGUAGES) {
  test.describe(`axe, WCAG 2.1 AA [${language}]`, () => {
    test('sign-in, forgot password and set password', async ({ browser }) => {
      const page = await (await contextIn(browser, language)).newPage();
      await page.goto('/login');
      await audit(page, 'sign-in', language);
      // A failed sign-in shows its alert.
      await page.locator('#email').fill('nobody@example.com');
      await page.locator('#password').fill('not the password');
      await page.locator('form button[type=submit]').click();
      await expect(page.getByRole('alert')).toBeVisible();
      await audit(page, 'sign-in, failed', language);
      await page.goto('/forgot-password');
      await audit(page, 'forgot password', language);
      await page.goto('/set-password?token=0000');
      await audit(page, 'set password', language);
      await page.locator('#password').fill('short');
      await page.locator('form button[type=submit]').click();
      await expect(page.locator('#password[aria-invalid="true"], [role="alert"]').first()).toBeVisible();
      await audit(page, 'set password, refused', language);
    });

    test('SMTP in both modes and both auth types, with field errors and with the health alert', async ({ browser }) => {
      const page = await (await contextIn(browser, language)).newPage();
      await signIn(page, ADMIN, /\/admin\/smtp$/);
      await hydrated(page);
      const custom = page.locator('input[name=mode][value=custom]');
      const def = page.locator('input[name=mode][value=default]');
      await def.check();
      await audit(page, 'SMTP, default', language);
      await custom.check();
      await page.locator('#auth_type').selectOption('basic');
      await audit(page, 'SMTP, custom, Basic', language);
      await page.locator('#auth_type').selectOption('oauth2');
      await audit(page, 'SMTP, custom, OAuth 2.0', language);
      await page.locator('#auth_type').selectOption('google');
      await audit(page, 'SMTP, custom, Google service account', language);

      // Field errors shown: a From with a forbidden character and an empty server.
      await page.locator('#auth_type').selectOption('basic');
      await page.locator('#host').fill('');
      await page.locator('#from').fill('Mail;room <mail@example.com>');
      await page.locator('form.smtp-form button[type=submit]').click();
      await expect(page.locator('#from')).toHaveAttribute('aria-invalid', 'true');
      await audit(page, 'SMTP, field errors', language);

      // The health alert: settings that cannot work (nothing listens on port 9), saved.
      await page.locator('#host').fill('127.0.0.1');
      await page.locator('#from').fill('Mailroom <mail@example.com>');
      await page.locator('#port').fill('9');
      await page.locator('#username').fill('');
      await page.locator('#password').fill('any');
      if (await page.locator('#tls_enabled').isChecked()) await page.locator('#tls_enabled').uncheck();
      await page.locator('form.smtp-form button[type=submit]').click();
      await expect(page.locator('.smtp-alert[role=alert]')).toBeVisible({ timeout: 20_000 });
      await expect(page.locator('.warn-icon')).toHaveAttribute('aria-label', language === 'en' ? 'SMTP has errors' : 'SMTP mengalami galat');
      await audit(page, 'SMTP, health alert up', language);
    });

    test('Outbox, Users and Mailbox', async ({ browser }) => {
      const page = await (await contextIn(browser, language)).newPage();
      await signIn(page, ADMIN, /\/admin\/smtp$/);
      await page.goto('/admin/outbox');
      await expect(page.locator('table.list')).toBeVisible();
      await audit(page, 'Outbox', language);
      await page.goto('/admin/users');
      await expect(page.locator('table.list')).toBeVisible();
      await audit(page, 'Users', language);
      // An address that is taken: the field error is shown beside the field.
      await page.locator('#new-name').fill('Someone Else');
      await page.locator('#new-email').fill(ADMIN.email);
      await page.locator('main form button[type=submit]').click();
      await expect(page.locator('#new-email')).toHaveAttribute('aria-invalid', 'true');
      await audit(page, 'Users, create refused', language);
      await page.goto('/admin/mailbox');
      await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
      await audit(page, 'Mailbox', language);
      const first = page.locator('table.list a').first();
      if (await first.count()) {
        await first.click();
        await expect(page.locator('article.mail')).toBeVisible();
        await audit(page, 'Mailbox message', language);
      }
      // The 403 page, as a user who is not an admin.
      const user = await (await contextIn(browser, language)).newPage();
      await signIn(user, USER, /\/$/);
      await user.goto('/admin/smtp');
      await expect(user.getByRole('heading', { level: 1 })).toContainText('403');
      await audit(user, '403', language);
    });
  });
}

test.describe('axe: Create the first admin', () => {
  // Only an instance without an admin shows it: a second server, fresh database, no admin set.
  let server: ChildProcess | undefined;
  const port = Number(process.env.MAILROOM_E2E_PORT ?? 3210) + 30;
  const url = `http://127.0.0.1:${port}`;

  test.beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailroom-setup-'));
    server = spawn(process.env.MAILROOM_SERVER_BIN ?? path.join(os.homedir(), '.cache/mailroom/target/debug/server'), [], {
      env: {
        ...process.env,
        MAILROOM_BIND: `127.0.0.1:${port}`,
        MAILROOM_DATABASE_URL: 'mem://',
        MAILROOM_SECRET_KEY_FILE: path.join(dir, 'secret.key'),
        LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.resolve(__dirname, '../../target/site'),
        LEPTOS_OUTPUT_NAME: 'mailroom',
        RUST_LOG: 'warn',
      },
      stdio: 'ignore',
    });
    await expect(async () => {
      const answer = await fetch(`${url}/login`);
      expect(answer.status).toBe(200);
    }).toPass({ timeout: 60_000 });
  });

  test.afterAll(() => {
    server?.kill('SIGTERM');
  });

  for (const language of LANGUAGES) {
    test(`the setup page [${language}]`, async ({ browser }) => {
      const page = await (await contextIn(browser, language, url)).newPage();
      await page.goto(`${url}/setup`);
      await expect(page.locator('#setup_code')).toBeVisible();
      await audit(page, 'create the first admin', language);
      await page.locator('#name').fill('First Admin');
      await page.locator('#email').fill('first@example.com');
      await page.locator('#password').fill('short');
      await page.locator('#setup_code').fill('wrong');
      await page.locator('form button[type=submit]').click();
      await expect(page.locator('#password')).toHaveAttribute('aria-invalid', 'true');
      await audit(page, 'create the first admin, field errors', language);
    });
  }
});
