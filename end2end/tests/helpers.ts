import { expect, type Page } from '@playwright/test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ADMIN = { email: 'admin@example.com', password: 'e2e admin password' };
export const USER = { email: 'user@example.com', password: 'e2e user password' };

/** Waits until the WASM has hydrated the page, so clicks are not lost. */
export async function hydrated(page: Page) {
  await expect(page.locator('body[data-hydrated="true"]')).toBeAttached({ timeout: 30_000 });
}

export async function signIn(page: Page, who: { email: string; password: string }) {
  await page.goto('/login');
  await hydrated(page);
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The e2e aiosmtpd peer: STARTTLS + AUTH PLAIN/LOGIN on the port beside the server's. */
export const PEER = { port: Number(process.env.MAILROOM_E2E_PORT ?? 3210) + 15, user: 'mailer', password: 'peer-password-1' };

/** Fills the custom settings for the e2e peer with `password` (nothing is submitted). */
export async function fillPeerSettings(page: Page, password: string) {
  await page.getByLabel('Use custom email settings').check();
  await page.getByLabel('Email Server').fill('localhost');
  await page.getByLabel('From', { exact: true }).fill('Mailroom E2E <mail@example.com>');
  if (!(await page.getByLabel('TLS/SSL', { exact: true }).isChecked())) {
    await page.getByLabel('TLS/SSL', { exact: true }).check();
  }
  await page.getByLabel('TLS mode').selectOption({ label: 'STARTTLS' });
  await page.getByLabel('Port', { exact: true }).fill(String(PEER.port));
  await page.getByLabel('Authentication type').selectOption({ label: 'Basic Authentication' });
  await page.getByLabel('Username').fill(PEER.user);
  await page.getByLabel('Password', { exact: true }).fill(password);
}

export type Received = { message_id: string; subject: string; text: string; from: string; to: string[]; data: string; tls: boolean };

/** Everything the e2e peer has accepted so far. */
export function received(): Received[] {
  const mbox = path.join(os.tmpdir(), `mailroom-e2e-${PEER.port - 15}`, 'mbox.jsonl');
  if (!fs.existsSync(mbox)) return [];
  return fs.readFileSync(mbox, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Waits for a mail to `to` whose subject starts with `subject`; answers the link in it. */
export async function linkInMail(to: string, subject: string): Promise<string> {
  let link = '';
  await expect(async () => {
    const mail = received().filter((m) => m.to.includes(to) && m.subject.startsWith(subject)).pop();
    expect(mail, `a mail "${subject}" to ${to}`).toBeTruthy();
    link = mail!.text.match(/http:\/\/\S+/)![0];
  }).toPass({ timeout: 20_000 });
  return link;
}
