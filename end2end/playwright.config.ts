import { defineConfig, devices } from '@playwright/test';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';

const port = Number(process.env.MAILROOM_E2E_PORT ?? 3210);
const baseURL = `http://127.0.0.1:${port}`;
const serverBin =
  process.env.MAILROOM_SERVER_BIN ?? path.join(os.homedir(), '.cache/mailroom/target/debug/server');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailroom-e2e-'));

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
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  projects: [{ name: 'chromium', use: { ...devices['Desktop Chrome'] } }],
  webServer: {
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
      LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.resolve(__dirname, '../target/site'),
      LEPTOS_OUTPUT_NAME: 'mailroom',
      RUST_LOG: 'info',
    },
  },
});
