// Types lines at the page's `>>: ` prompt in headless Chromium (Debian's,
// driven by playwright-core) and reads the replies off the page.
//
//   node page.mjs URL SCREENSHOT LINE...
//
// Prints one JSON object: the connection state, each reply's text and
// round-trip time, the prompt's accessible label, and whether the whole
// exchange was done with the keyboard alone. Exits non-zero on any failure.
import { chromium } from 'playwright-core';

const [url, screenshot, ...lines] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-background-networking',
    '--disable-component-update', '--disable-gpu'],
  timeout: 60_000,
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 560 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
  page.on('pageerror', (error) => problems.push(String(error)));
  await page.goto(url, { timeout: 30_000 });
  await page.waitForFunction(() => document.body.dataset.state === 'open', null, { timeout: 30_000 });
  // Keyboard only: the prompt has the focus when the page opens; type, Enter.
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  for (const [i, line] of lines.entries()) {
    await page.keyboard.type(line);
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => document.querySelectorAll('#log .reply').length >= n, i + 1, { timeout: 30_000 });
  }
  const replies = await page.$$eval('#log .reply', (items) => items.map((item) => ({
    text: item.firstChild.textContent,
    rtt: item.querySelector('.rtt') ? item.querySelector('.rtt').textContent : null,
  })));
  const label = await page.evaluate(() => {
    const input = document.getElementById('line');
    return input.labels && input.labels[0] ? input.labels[0].textContent.trim() : null;
  });
  const state = await page.textContent('#state');
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ state, focused, label, replies, problems }));
} finally {
  await browser.close();
}
