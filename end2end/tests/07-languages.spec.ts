import { test, expect, type Browser, type Page } from '@playwright/test';
import { ADMIN, PEER, fillPeerSettings, hydrated, linkInMail, received, signIn } from './helpers';
import { expectVisibleFocus, tabTo, typeInto } from './keyboard';

// An admin whose language is Indonesian, created in this file (the shared admin stays English).
export const SARI = { name: 'Sari Admin', email: 'sari@example.com', password: 'sari memilih sandi ini' };
const BUDI = { name: 'Budi Pengguna', email: 'budi@example.com' };

async function freshPage(browser: Browser, locale = 'en-US') {
  return (await browser.newContext({ locale })).newPage();
}

/** Marks the window: a reload would lose the mark. */
async function markWindow(page: Page) {
  await page.evaluate(() => ((window as unknown as { mailroomMark: number }).mailroomMark = 42));
}
async function expectSameWindow(page: Page) {
  expect(await page.evaluate(() => (window as unknown as { mailroomMark?: number }).mailroomMark)).toBe(42);
}

async function signInAs(page: Page, who: { email: string; password: string }, labels = { email: 'Email', password: 'Sandi', submit: 'Masuk' }) {
  await page.goto('/login');
  await hydrated(page);
  await page.getByLabel(labels.email, { exact: true }).fill(who.email);
  await page.getByLabel(labels.password, { exact: true }).fill(who.password);
  await page.getByRole('button', { name: labels.submit }).click();
}

test.describe.serial('English and Bahasa Indonesia', () => {
  test('a browser that prefers Indonesian gets it on the first visit, and the switch on /login changes it at once', async ({ browser }) => {
    const page = await freshPage(browser, 'id-ID');
    await page.goto('/login');
    await expect(page.locator('html')).toHaveAttribute('lang', 'id');
    await expect(page.getByRole('heading', { name: 'Masuk' })).toBeVisible();
    await hydrated(page);
    await expect(page.getByLabel('Sandi', { exact: true })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Masuk' })).toBeVisible();

    await markWindow(page);
    await page.getByLabel('Bahasa', { exact: true }).selectOption('en');
    await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
    await expect(page.getByLabel('Password', { exact: true })).toBeVisible();
    await expect(page.locator('html')).toHaveAttribute('lang', 'en');
    await expectSameWindow(page);

    // The choice outlives the browser's preference.
    await page.reload();
    await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
    await expect(page.locator('html')).toHaveAttribute('lang', 'en');
  });

  test('an invitation to a user whose language is Indonesian arrives in Indonesian', async ({ page, browser }) => {
    await signIn(page, ADMIN);
    await expect(page).toHaveURL(/\/admin\/smtp$/);
    await hydrated(page);
    // The mail of this file goes to the test peer.
    await fillPeerSettings(page, PEER.password);
    await page.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByRole('status')).toHaveText('Settings saved');

    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Users' }).click();
    await expect(page.getByRole('heading', { name: 'Users', level: 1 })).toBeVisible();
    await hydrated(page);
    for (const [who, role] of [[SARI, 'Admin'], [BUDI, 'User']] as const) {
      await page.getByLabel('Name').fill(who.name);
      await page.getByLabel('Email').fill(who.email);
      await page.getByLabel('Role').selectOption({ label: role });
      await page.getByLabel('Their language').selectOption('id');
      await page.getByRole('button', { name: 'Create user' }).click();
      await expect(page.getByRole('status')).toHaveText(`Invitation sent to ${who.email}`);
    }

    const link = await linkInMail(BUDI.email, 'Anda diundang ke Mailroom E2E');
    const mail = received().filter((m) => m.to.includes(BUDI.email)).pop()!;
    expect(mail.text).toContain(`Halo ${BUDI.name},`);
    expect(mail.text).toContain('admin mengundang Anda ke Mailroom E2E. Setel sandi Anda di sini');
    expect(link).toContain('/set-password?token=');

    // Sari's link opens in her language, even in a browser that prefers English; signed in,
    // she reads the Admin area in Indonesian at once.
    const sariLink = await linkInMail(SARI.email, 'Anda diundang ke Mailroom E2E');
    const sari = await freshPage(browser);
    await sari.goto(sariLink);
    await expect(sari.locator('html')).toHaveAttribute('lang', 'id');
    await hydrated(sari);
    await sari.getByLabel('Sandi baru').fill(SARI.password);
    await sari.getByRole('button', { name: 'Setel sandi' }).click();
    await expect(sari).toHaveURL(/\/login\?password=set$/);
    await expect(sari.getByRole('status')).toHaveText('Sandi sudah disetel. Masuk dengan sandi baru Anda.');
    await signInAs(sari, SARI);
    await expect(sari).toHaveURL(/\/admin\/smtp$/);
    await expect(sari.locator('html')).toHaveAttribute('lang', 'id');
    await expect(sari.getByLabel('Gunakan setelan email kustom')).toBeVisible();
    await expect(sari.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Kotak Keluar' })).toBeVisible();
  });

  test('the switch puts the seed\'s words on the SMTP page without a reload; they stay after a reload and a new sign-in', async ({ browser }) => {
    const page = await freshPage(browser);
    await signInAs(page, SARI, { email: 'Email', password: 'Password', submit: 'Sign in' });
    await expect(page).toHaveURL(/\/admin\/smtp$/);
    await hydrated(page);
    await page.getByLabel('Bahasa', { exact: true }).selectOption('en');
    await expect(page.getByLabel('Use custom email settings')).toBeVisible();
    await markWindow(page);

    await page.getByLabel('Language', { exact: true }).selectOption('id');
    await expect(page.locator('html')).toHaveAttribute('lang', 'id');
    await page.getByLabel('Gunakan setelan email kustom').check();
    await expect(page.getByLabel('Gunakan setelan email default')).toBeVisible();
    for (const label of ['Server Email', 'Dari', 'Port', 'TLS/SSL', 'Jenis autentikasi']) {
      await expect(page.getByLabel(label, { exact: true })).toBeVisible();
    }
    await page.getByLabel('Jenis autentikasi').selectOption({ label: 'Autentikasi Dasar' });
    await expect(page.getByLabel('Nama Pengguna', { exact: true })).toBeVisible();
    await expect(page.getByLabel('Sandi', { exact: true })).toBeVisible();
    await page.getByLabel('Jenis autentikasi').selectOption({ label: 'OAuth 2.0' });
    for (const label of ['Client ID', 'Rahasia Klien', 'URL token', 'Cakupan']) {
      await expect(page.getByLabel(label, { exact: true })).toBeVisible();
    }
    await expect(page.getByRole('button', { name: 'Simpan' })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Kirim Email Uji Coba' })).toBeVisible();
    await expectSameWindow(page);

    await page.reload();
    await hydrated(page);
    await expect(page.getByLabel('Gunakan setelan email kustom')).toBeVisible();
    await expect(page.getByRole('button', { name: 'Simpan' })).toBeVisible();

    // Signed out, and in again from a browser that never saw the choice: it is Sari's.
    await page.getByRole('button', { name: 'Keluar' }).click();
    await expect(page).toHaveURL(/\/login$/);
    const elsewhere = await freshPage(browser);
    await signInAs(elsewhere, SARI, { email: 'Email', password: 'Password', submit: 'Sign in' });
    await expect(elsewhere).toHaveURL(/\/admin\/smtp$/);
    await expect(elsewhere.locator('html')).toHaveAttribute('lang', 'id');
    await expect(elsewhere.getByRole('button', { name: 'Simpan' })).toBeVisible();
  });

  test('by keyboard only, in Indonesian: sign in, fill and save the SMTP form, send a test, create a user', async ({ browser }) => {
    const page = await freshPage(browser, 'id-ID');
    await page.goto('/login');
    await hydrated(page);
    await typeInto(page, page.getByLabel('Email', { exact: true }), SARI.email);
    await typeInto(page, page.getByLabel('Sandi', { exact: true }), SARI.password);
    await page.keyboard.press('Enter');
    await expect(page).toHaveURL(/\/admin\/smtp$/);
    await hydrated(page);

    // The mode radios: arrows move the choice inside the group.
    const custom = page.getByLabel('Gunakan setelan email kustom');
    if (!(await custom.isChecked())) {
      await tabTo(page, page.getByLabel('Gunakan setelan email default'));
      await expectVisibleFocus(page);
      await page.keyboard.press('ArrowDown');
      await expect(custom).toBeChecked();
    }
    await typeInto(page, page.getByLabel('Server Email', { exact: true }), 'localhost');
    await typeInto(page, page.getByLabel('Dari', { exact: true }), 'Mailroom E2E <mail@example.com>');
    const tls = page.getByLabel('TLS/SSL', { exact: true });
    if (!(await tls.isChecked())) {
      await tabTo(page, tls);
      await page.keyboard.press('Space');
      await expect(tls).toBeChecked();
    }
    await tabTo(page, page.getByLabel('Mode TLS'));
    await page.keyboard.press('Home');
    await expect(page.getByLabel('Mode TLS')).toHaveValue('starttls');
    await typeInto(page, page.getByLabel('Port', { exact: true }), String(PEER.port));
    await tabTo(page, page.getByLabel('Jenis autentikasi'));
    await page.keyboard.press('Home');
    await expect(page.getByLabel('Jenis autentikasi')).toHaveValue('basic');
    await typeInto(page, page.getByLabel('Nama Pengguna', { exact: true }), PEER.user);
    await typeInto(page, page.getByLabel('Sandi', { exact: true }), PEER.password);

    // Shift+Tab works too: from Send Test Email back to Simpan.
    await tabTo(page, page.getByRole('button', { name: 'Kirim Email Uji Coba' }));
    await tabTo(page, page.getByRole('button', { name: 'Simpan' }), { back: true });
    await expectVisibleFocus(page);
    await page.keyboard.press('Enter');
    // The result is announced: a polite live region under the buttons.
    const result = page.locator('p.result[aria-live="polite"]');
    await expect(result).toHaveText('Setelan tersimpan');

    await tabTo(page, page.getByRole('button', { name: 'Kirim Email Uji Coba' }));
    await page.keyboard.press('Space');
    await expect(result).toHaveText(`Email uji coba terkirim ke ${SARI.email}`);
    await expect(async () => {
      const mail = received().filter((m) => m.to.includes(SARI.email) && m.subject === 'Uji Coba Email Mailroom E2E');
      expect(mail.length).toBeGreaterThan(0);
      expect(mail.pop()!.text).toContain('Email Mailroom E2E berfungsi!');
    }).toPass({ timeout: 20_000 });

    // A failed test is announced the same way, in Indonesian.
    await typeInto(page, page.getByLabel('Sandi', { exact: true }), 'wrong-password');
    await tabTo(page, page.getByRole('button', { name: 'Kirim Email Uji Coba' }));
    await page.keyboard.press('Enter');
    await expect(result).toContainText('Autentikasi ditolak: 535');
    await expect(result).toContainText('periksa Nama Pengguna dan Sandi');

    // Create a user from the Users page, reached by keyboard from the sidebar.
    await tabTo(page, page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Pengguna' }));
    await expectVisibleFocus(page);
    await page.keyboard.press('Enter');
    await expect(page.getByRole('heading', { name: 'Pengguna', level: 1 })).toBeVisible();
    await hydrated(page);
    await typeInto(page, page.getByLabel('Nama', { exact: true }), 'Dewi Papan Ketik');
    await typeInto(page, page.getByLabel('Email', { exact: true }), 'dewi@example.com');
    // Her language: the last choice of the select, by keyboard.
    await tabTo(page, page.getByLabel('Bahasa mereka'));
    await expectVisibleFocus(page);
    await page.keyboard.press('End');
    await expect(page.getByLabel('Bahasa mereka')).toHaveValue('id');
    await tabTo(page, page.getByRole('button', { name: 'Buat pengguna' }));
    await page.keyboard.press('Enter');
    await expect(page.getByRole('status')).toHaveText('Undangan terkirim ke dewi@example.com');
    await linkInMail('dewi@example.com', 'Anda diundang ke Mailroom E2E');
  });
});
