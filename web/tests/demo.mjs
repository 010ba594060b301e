// The demo's full flow in Debian's Chromium against a plain static server: click stickers, chat,
// make stickers, thumbs up, reload (history and learned alpha kept), delete; screenshots at desktop
// and mobile widths with layout checks; nothing the user did appears in any request.
//   node web/tests/demo.mjs                         # the demo as it is in the repository
//   DEMO_SITE=target/demo-site node web/tests/demo.mjs  # the static build (scripts/build-demo.sh)
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { assert, assertEqual, launch, root, runner, serve } from './lib.mjs';

const site = process.env.DEMO_SITE ? resolve(root, process.env.DEMO_SITE) : root;
const server = await serve({}, site);
console.log(`     serving ${site}`);
const browser = await launch();
const { test, run } = runner();
const ART = join(root, 'target/browser-artifacts');
await mkdir(ART, { recursive: true });
const CHAT = ['I love my morning espresso with a doughnut', 'and cats, always cats'];

/** Nothing sticks out sideways and every control can be reached. */
async function layout(page) {
  return page.evaluate(() => {
    const over = document.scrollingElement.scrollWidth - window.innerWidth;
    const hidden = [...document.querySelectorAll('button, input, select')]
      .filter((el) => el.offsetParent !== null)
      .filter((el) => {
        const r = el.getBoundingClientRect();
        return r.width < 16 || r.height < 16 || r.left < 0 || r.right > window.innerWidth + 1;
      })
      .map((el) => `${el.id || el.textContent.trim().slice(0, 20)} ${JSON.stringify(el.getBoundingClientRect())}`);
    return { over, hidden };
  });
}

test('demo: click, chat, make stickers, thumbs up, reload, delete; desktop and mobile screenshots', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`     [page error] ${e}`));
  await page.goto(`${server.origin}/web/demo/index.html?device=cpu&steps=8`);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 120_000 });
  assert((await page.textContent('#load-text')).startsWith('Ready on the CPU'), 'ready notice');
  assert(await page.isVisible('#backend'), 'the CPU path is announced');

  for (const id of ['1f431', '2615', '1f369']) await page.click(`.sticker[data-id="${id}"]`);
  for (const line of CHAT) {
    await page.fill('#chat-input', line);
    await page.press('#chat-input', 'Enter');
  }
  await page.waitForFunction(() => document.querySelector('#count').textContent === '5');
  assertEqual(await page.locator('.sticker.picked').count(), 3, 'picked stickers are marked');

  await page.selectOption('#occasion', { label: 'birthday' });
  await page.check('#implicit'); // PMG's implicit preferences (soft prompt) too
  await page.click('#generate');
  await page.waitForSelector('.cand', { timeout: 180_000 });
  const cards = await page.locator('.cand').count();
  assertEqual(cards, 6, 'six candidates (weights 0, 1, 2 x two seeds)');
  assertEqual(await page.locator('.cand.chosen').count(), 1, 'one chosen candidate');
  const keywords = await page.textContent('#keywords');
  assert(keywords.startsWith('What we think you like:') && keywords.includes('implicit preferences'), keywords);
  console.log(`     ${keywords}; ${await page.textContent('#gen-text')}`);
  await page.screenshot({ path: join(ART, 'demo-desktop.png'), fullPage: true });
  const desk = await layout(page);
  assertEqual([desk.over <= 0, desk.hidden], [true, []], `desktop layout: ${JSON.stringify(desk)}`);

  // A PNG download of a candidate.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('.cand.chosen a')]);
  const png = await download.path().then((p) => import('node:fs/promises').then((fs) => fs.readFile(p)));
  assertEqual([...png.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG', 'the download is a PNG');

  const before = Number(await page.textContent('#learned-alpha'));
  // Thumbs up on the most personal candidate (highest weight): alpha rises.
  await page.click('.cand:nth-child(6) button[aria-label="thumbs up"]');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '6');
  const after = Number(await page.textContent('#learned-alpha'));
  console.log(`     learned alpha ${before} -> ${after}`);
  assert(after !== before, 'feedback moves the learned alpha');

  // A shop item, made yours: the candidates start from the item's own picture.
  await page.selectOption('#occasion', { label: 'doughnut' });
  await page.uncheck('#implicit');
  await page.click('#generate');
  await page.waitForFunction(() => document.querySelector('.cand .scores')?.textContent.includes("from the item's picture"), null, { timeout: 180_000 });
  assertEqual(await page.locator('.cand').count(), 6, 'six candidates from the picture');
  console.log(`     doughnut from its picture: ${await page.textContent('.cand.chosen .scores')}`);
  await page.screenshot({ path: join(ART, 'demo-item.png'), fullPage: true });

  // Reload: the history, the chat and the learned alpha are still there (IndexedDB), models from the cache.
  const fetchesBefore = server.log.filter((r) => r.path.endsWith('.gguf')).length;
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]', { timeout: 120_000 });
  assertEqual(await page.textContent('#count'), '6', 'history survives a reload');
  assertEqual(Number(await page.textContent('#learned-alpha')), after, 'learned alpha survives a reload');
  assertEqual(await page.locator('#transcript p').count(), CHAT.length, 'chat survives a reload');
  assertEqual(server.log.filter((r) => r.path.endsWith('.gguf')).length, fetchesBefore, 'the model came from the cache');

  // Mobile width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ART, 'demo-mobile.png'), fullPage: true });
  const mob = await layout(page);
  assertEqual([mob.over <= 0, mob.hidden], [true, []], `mobile layout: ${JSON.stringify(mob)}`);

  // Delete: everything goes, alpha back to its default.
  await page.click('#delete');
  await page.waitForFunction(() => document.querySelector('#count').textContent === '0');
  assertEqual(await page.textContent('#learned-alpha'), '0.50', 'alpha reset with the history');
  await context.close();

  // Privacy: only GETs without bodies, and no request carries anything the user did.
  const secrets = [...CHAT, 'espresso', 'doughnut', 'cat face', 'hot beverage'];
  const leaks = server.log.filter((r) => r.method !== 'GET' || r.body.length > 0 || secrets.some((s) => decodeURIComponent(r.url).includes(s) || JSON.stringify(r.headers).includes(s)));
  assertEqual(leaks.map((r) => `${r.method} ${r.url}`), [], 'requests carrying history');
});

const failed = await run();
await browser.close();
server.close();
process.exit(failed ? 1 : 0);
