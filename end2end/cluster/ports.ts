/** Where the cluster of cluster.config.ts listens; beside the single-node tests' ports. */
const base = Number(process.env.MAILROOM_E2E_CLUSTER_PORT ?? 3310);

export const CLUSTER = {
  proxy: base,
  proxyUrl: `http://127.0.0.1:${base}`,
  db: base + 1,
  nodes: [base + 2, base + 3, base + 4],
  nodeUrl: (letter: 'a' | 'b' | 'c') => `http://127.0.0.1:${base + 2 + 'abc'.indexOf(letter)}`,
  smtp: base + 15,
  smtpUser: 'mailer',
  smtpPassword: 'peer-password-1',
  admin: { email: 'admin@example.com', password: 'e2e cluster admin password' },
};
