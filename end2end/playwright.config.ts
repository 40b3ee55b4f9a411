import { defineConfig, devices } from '@playwright/test';
import { launchOptions } from './browser';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

const port = Number(process.env.MAILROOM_E2E_PORT ?? 3210);
const baseURL = `http://127.0.0.1:${port}`;
const serverBin =
  process.env.MAILROOM_SERVER_BIN ?? path.join(os.homedir(), '.cache/mailroom/target/debug/server');
const smtpPort = port + 15;
// One directory per run, made by the main process; workers load this file too and reuse it.
export const stateDir = path.join(os.tmpdir(), `mailroom-e2e-${port}`);
if (!process.env.TEST_WORKER_INDEX) {
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.mkdirSync(stateDir, { recursive: true });
  // Test certificates, made at test time: a CA and a localhost certificate it signs.
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: stateDir, stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Mailroom E2E CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem', '-out', 'leaf.csr', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'cert.pem',
    '-days', '2', '-copy_extensions', 'copy');
  // A private relay: its own CA, which the server is not told about (pasted on the page instead).
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'private-ca.key', '-out', 'private-ca.pem', '-days', '30',
    '-subj', '/CN=Mailroom E2E Private CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'private-key.pem', '-out', 'private.csr', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
  openssl('x509', '-req', '-in', 'private.csr', '-CA', 'private-ca.pem', '-CAkey', 'private-ca.key', '-CAcreateserial',
    '-out', 'private-cert.pem', '-days', '30', '-copy_extensions', 'copy');
}
const python = process.env.MAILROOM_TEST_PYTHON ?? path.join(os.homedir(), '.cache/mailroom/venv/bin/python');

export const ADMIN = { email: 'admin@example.com', password: 'e2e admin password' };
export const USER = { email: 'user@example.com', password: 'e2e user password' };

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  forbidOnly: !!process.env.CI,
  reporter: [['list']],
  use: {
    baseURL,
    trace: 'retain-on-failure',
    launchOptions,
  },
  projects: [{ name: 'chromium', use: { ...devices['Desktop Chrome'] } }],
  webServer: [{
    // aiosmtpd with STARTTLS and AUTH PLAIN/LOGIN: the real server the test mail must reach.
    command: [python, path.resolve(__dirname, '../server/tests/support/smtp_peer.py'), '--port', String(smtpPort),
      '--mode', 'starttls', '--auth', 'PLAIN,LOGIN', '--user', 'mailer', '--password', 'peer-password-1',
      '--cert', path.join(stateDir, 'cert.pem'), '--key', path.join(stateDir, 'key.pem'),
      '--mbox', path.join(stateDir, 'mbox.jsonl')].map((a) => `'${a}'`).join(' '),
    port: smtpPort,
    reuseExistingServer: false,
    timeout: 30_000,
  }, {
    // A Google-like token endpoint: it writes the service account's JSON key and verifies the
    // JWTs Mailroom signs with it; and the XOAUTH2 relay that accepts the token it issues.
    command: [python, path.resolve(__dirname, '../server/tests/support/google_token.py'), '--port', String(port + 16),
      '--key-out', path.join(stateDir, 'service-account.json'), '--delegate', 'sender@example.com',
      '--token', 'ya29.e2e-service-account-token'].map((a) => `'${a}'`).join(' '),
    port: port + 16,
    reuseExistingServer: false,
    timeout: 30_000,
  }, {
    command: [python, path.resolve(__dirname, '../server/tests/support/smtp_peer.py'), '--port', String(port + 17),
      '--mode', 'starttls', '--auth', 'XOAUTH2', '--user', 'sender@example.com', '--token', 'ya29.e2e-service-account-token',
      '--cert', path.join(stateDir, 'cert.pem'), '--key', path.join(stateDir, 'key.pem'),
      '--mbox', path.join(stateDir, 'mbox-google.jsonl')].map((a) => `'${a}'`).join(' '),
    port: port + 17,
    reuseExistingServer: false,
    timeout: 30_000,
  }, {
    // A relay whose certificate a private CA signed (not in MAILROOM_SMTP_CA_FILE).
    command: [python, path.resolve(__dirname, '../server/tests/support/smtp_peer.py'), '--port', String(port + 18),
      '--mode', 'starttls', '--cert', path.join(stateDir, 'private-cert.pem'), '--key', path.join(stateDir, 'private-key.pem'),
      '--mbox', path.join(stateDir, 'mbox-private.jsonl')].map((a) => `'${a}'`).join(' '),
    port: port + 18,
    reuseExistingServer: false,
    timeout: 30_000,
  }, {
    command: serverBin,
    url: `${baseURL}/login`,
    reuseExistingServer: !process.env.CI,
    timeout: 120_000,
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      MAILROOM_BIND: `127.0.0.1:${port}`,
      MAILROOM_DATABASE_URL: 'mem://',
      MAILROOM_SECRET_KEY_FILE: path.join(stateDir, 'secret.key'),
      MAILROOM_INSTANCE_NAME: 'Mailroom E2E',
      MAILROOM_ADMIN_EMAIL: ADMIN.email,
      MAILROOM_ADMIN_PASSWORD: ADMIN.password,
      MAILROOM_USER_EMAIL: USER.email,
      MAILROOM_USER_PASSWORD: USER.password,
      MAILROOM_LOGIN_PER_MINUTE: '100',
      MAILROOM_SMTP_ACTIONS_PER_MINUTE: '100',
      MAILROOM_SMTP_CA_FILE: path.join(stateDir, 'ca.pem'),
      MAILROOM_SMTP_TIMEOUT_SECS: '10',
      LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.resolve(__dirname, '../target/site'),
      LEPTOS_OUTPUT_NAME: 'mailroom',
      RUST_LOG: 'info',
    },
  }],
});
