// Time to hydrated on a cold load, for bench/assets.py:
//   MAILROOM_URL=http://127.0.0.1:PORT COOKIE='name=value' RUNS=5 node hydrate.js
// Each run is a fresh browser context (empty cache) loading the signed-in Admin > SMTP page;
// it prints one JSON line: the milliseconds from navigation start to <body data-hydrated>, and
// the bytes each response carried on the wire (as sent, compressed or not).
const { chromium } = require('@playwright/test');

(async () => {
  const base = process.env.MAILROOM_URL;
  const [name, ...rest] = (process.env.COOKIE ?? '').split('=');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const runs = [];
  for (let run = 0; run < Number(process.env.RUNS ?? 5); run++) {
    const context = await browser.newContext();
    await context.addCookies([{ name, value: rest.join('='), url: base }]);
    const page = await context.newPage();
    const wire = {};
    page.on('requestfinished', async (request) => {
      const sizes = await request.sizes();
      wire[new URL(request.url()).pathname] = sizes.responseBodySize + sizes.responseHeadersSize;
    });
    await page.goto(`${base}/admin/smtp`);
    await page.locator('body[data-hydrated="true"]').waitFor({ state: 'attached', timeout: 30000 });
    const ms = await page.evaluate(() => performance.now());
    await page.waitForLoadState('networkidle');
    runs.push({ ms, wire });
    await context.close();
  }
  await browser.close();
  console.log(JSON.stringify(runs));
})();
