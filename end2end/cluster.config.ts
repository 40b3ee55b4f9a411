// Playwright against a cluster: scripts/cluster.sh starts SurrealDB's server, three Mailroom
// nodes on it and HAProxy in front; the tests in ./cluster open pages through HAProxy and on
// single nodes. Run after the site is built: `npx playwright test -c cluster.config.ts`.
import { defineConfig, devices } from '@playwright/test';
import { launchOptions } from './browser';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { CLUSTER } from './cluster/ports';

const stateDir = path.join(os.tmpdir(), `mailroom-e2e-cluster-${CLUSTER.proxy}`);
if (!process.env.TEST_WORKER_INDEX) {
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.mkdirSync(stateDir, { recursive: true });
}
const python = process.env.MAILROOM_TEST_PYTHON ?? path.join(os.homedir(), '.cache/mailroom/venv/bin/python');

export default defineConfig({
  testDir: './cluster',
  timeout: 90_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  forbidOnly: !!process.env.CI,
  reporter: [['list']],
  use: {
    baseURL: CLUSTER.proxyUrl,
    trace: 'retain-on-failure',
    launchOptions,
  },
  projects: [{ name: 'chromium', use: { ...devices['Desktop Chrome'] } }],
  webServer: [{
    // aiosmtpd with AUTH PLAIN/LOGIN (plaintext: every node reaches it on 127.0.0.1).
    command: [python, path.resolve(__dirname, '../server/tests/support/smtp_peer.py'), '--port', String(CLUSTER.smtp),
      '--mode', 'plain', '--auth', 'PLAIN,LOGIN', '--user', CLUSTER.smtpUser, '--password', CLUSTER.smtpPassword,
      '--mbox', path.join(stateDir, 'mbox.jsonl')].map((a) => `'${a}'`).join(' '),
    port: CLUSTER.smtp,
    reuseExistingServer: false,
    timeout: 30_000,
    stderr: 'ignore',
  }, {
    // The binaries are built already (scripts/test.sh builds the site first).
    command: `bash '${path.resolve(__dirname, '../scripts/cluster.sh')}'`,
    url: `${CLUSTER.proxyUrl}/login`,
    reuseExistingServer: false,
    timeout: 180_000,
    // SIGTERM lets the script stop HAProxy, the nodes and the database in order.
    gracefulShutdown: { signal: 'SIGTERM', timeout: 30_000 },
    stdout: 'pipe',
    stderr: 'pipe',
    env: {
      MAILROOM_CLUSTER_SKIP_BUILD: '1',
      MAILROOM_CLUSTER_DIR: path.join(stateDir, 'cluster'),
      MAILROOM_CLUSTER_PORT: String(CLUSTER.proxy),
      MAILROOM_CLUSTER_DB_PORT: String(CLUSTER.db),
      MAILROOM_CLUSTER_NODE_PORTS: CLUSTER.nodes.join(' '),
      MAILROOM_INSTANCE_NAME: 'Mailroom E2E cluster',
      MAILROOM_ADMIN_EMAIL: CLUSTER.admin.email,
      MAILROOM_ADMIN_PASSWORD: CLUSTER.admin.password,
      MAILROOM_LOGIN_PER_MINUTE: '100',
      MAILROOM_SMTP_ACTIONS_PER_MINUTE: '100',
      MAILROOM_SMTP_TIMEOUT_SECS: '10',
      LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? path.resolve(__dirname, '../target/site'),
      LEPTOS_OUTPUT_NAME: 'mailroom',
      RUST_LOG: 'info',
    },
  }],
});
