#!/usr/bin/env node
// Checks a published goalpost site the way a reader's browser sees it.
//
//   node tools/site-check/check.mjs SITE_DIR OUT_DIR
//
// Serves SITE_DIR (e.g. publish/current) on 127.0.0.1 at a port the OS picks, opens every
// *.html file under it in headless Chromium and, for each page:
//
//   * runs axe-core with the WCAG 2.0/2.1 A and AA rules;
//   * loads it 375 px wide and reports whether it scrolls sideways (content wider than the
//     screen);
//   * loads it with JavaScript disabled and reads its h1, which must not need a script.
//
// It also saves full-page screenshots into OUT_DIR: home.png (index.html) and goal.png (the
// first page under goals/, when there is one).
//
// The report goes to stdout as JSON:
//
//   {"pages": [{"page": "index.html",
//               "violations": [{"id", "impact", "help", "help_url", "nodes": [target, ...]}],
//               "overflow": false, "scroll_width": 375, "overflowing": ["span.why \"text...\" reaches 607 px", ...],
//               "h1_without_js": "..." | null,
//               "broken_links": ["/goals/missing.html (404)", ...]}],
//    "screenshots": [{"page": "index.html", "file": "/abs/OUT_DIR/home.png"}],
//    "chromium": "/usr/bin/chromium", "seconds": 2.1}
//
// Exit status: 0 when the check ran, whatever it found; 2 on bad arguments; 3 when
// node_modules or Chromium is missing (run tools/install-test-servers); 1 on any other crash.
//
// CHROMIUM names the browser to use (default /usr/bin/chromium, Debian's chromium package).

import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { access, constants, mkdir, readdir, realpath, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INSTALL = 'tools/install-test-servers';
const DEFAULT_CHROMIUM = '/usr/bin/chromium';
const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740 };
const NAVIGATION_TIMEOUT_MS = 30_000;

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.csv': 'text/csv; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.parquet': 'application/vnd.apache.parquet',
};

/** An error whose message is the whole story; `status` is the exit code. */
class Fatal extends Error {
  constructor(message, status = 1) {
    super(message);
    this.status = status;
  }
}

async function main(argv) {
  if (argv.length !== 2 || argv.some((a) => a === '-h' || a === '--help')) {
    throw new Fatal('usage: node tools/site-check/check.mjs SITE_DIR OUT_DIR', 2);
  }
  const started = process.hrtime.bigint();
  const [siteArg, outArg] = argv;
  let root;
  try {
    root = await realpath(siteArg);
  } catch (e) {
    throw new Fatal(`site directory ${siteArg} cannot be read: ${e.message}`, 2);
  }
  if (!(await stat(root)).isDirectory()) {
    throw new Fatal(`site directory ${siteArg} is not a directory`, 2);
  }
  const outDir = path.resolve(outArg);
  await mkdir(outDir, { recursive: true });

  const { chromium, axeSource } = await loadModules();
  const executablePath = process.env.CHROMIUM || DEFAULT_CHROMIUM;
  await findChromium(executablePath);

  const pages = await htmlFiles(root);
  if (pages.length === 0) {
    throw new Fatal(`no .html files under ${siteArg}`);
  }

  const server = await serve(root);
  const base = `http://127.0.0.1:${server.address().port}/`;
  let browser;
  try {
    try {
      // Playwright gives every launch a fresh --user-data-dir in a temporary directory and
      // removes it on close (it rejects --user-data-dir among `args`).
      browser = await chromium.launch({
        executablePath,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    } catch (e) {
      throw new Fatal(`could not start Chromium at ${executablePath}: ${e.message}`);
    }
    const withJs = await browser.newContext({ viewport: DESKTOP });
    const phone = await browser.newContext({ viewport: PHONE });
    const withoutJs = await browser.newContext({ viewport: DESKTOP, javaScriptEnabled: false });
    for (const context of [withJs, phone, withoutJs]) {
      context.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    }

    const report = { pages: [], screenshots: [], chromium: executablePath };
    const firstGoal = pages.find((p) => p.startsWith('goals/'));
    const shots = new Map([['index.html', 'home.png']]);
    if (firstGoal) shots.set(firstGoal, 'goal.png');

    for (const page of pages) {
      const url = new URL(page.split('/').map(encodeURIComponent).join('/'), base).href;
      const result = { page };

      const tab = await open(withJs, url, page);
      result.violations = await axe(tab, axeSource);
      result.broken_links = await brokenLinks(tab, base);
      if (shots.has(page)) {
        const file = path.join(outDir, shots.get(page));
        await tab.screenshot({ path: file, fullPage: true });
        report.screenshots.push({ page, file });
      }
      await tab.close();

      const narrow = await open(phone, url, page);
      Object.assign(result, await overflow(narrow));
      await narrow.close();

      const plain = await open(withoutJs, url, page);
      result.h1_without_js = await firstH1(plain);
      await plain.close();

      report.pages.push(result);
    }
    report.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    if (browser) await browser.close();
    server.close();
  }
}

/** Loads playwright-core and axe-core from this folder's node_modules, at the pinned versions. */
async function loadModules() {
  const manifest = JSON.parse(readFileSync(path.join(HERE, 'package.json'), 'utf8'));
  for (const [name, wanted] of Object.entries(manifest.dependencies)) {
    const installed = path.join(HERE, 'node_modules', name, 'package.json');
    if (!existsSync(installed)) {
      throw new Fatal(
        `${name} is not installed in ${path.join(HERE, 'node_modules')}; run ${INSTALL}`,
        3,
      );
    }
    const version = JSON.parse(readFileSync(installed, 'utf8')).version;
    if (version !== wanted) {
      throw new Fatal(`${name} ${version} is installed but ${wanted} is pinned; run ${INSTALL}`, 3);
    }
  }
  const { chromium } = await import('playwright-core');
  const axe = await import('axe-core');
  return { chromium, axeSource: (axe.default ?? axe).source };
}

async function findChromium(executablePath) {
  try {
    await access(executablePath, constants.X_OK);
  } catch {
    const how = process.env.CHROMIUM
      ? 'CHROMIUM names a browser that is not there; unset it to use /usr/bin/chromium'
      : `install Debian's chromium (apt-get install chromium), e.g. by running ${INSTALL}, or set CHROMIUM to a Chromium binary`;
    throw new Fatal(`Chromium not found at ${executablePath}: ${how}`, 3);
  }
}

/** Every *.html file under `root`, relative with forward slashes, sorted; follows symlinks. */
async function htmlFiles(root) {
  const found = [];
  const seen = new Set();
  async function walk(dir, rel) {
    const real = await realpath(dir);
    if (seen.has(real)) return;
    seen.add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      const relName = rel ? `${rel}/${entry.name}` : entry.name;
      const info = entry.isSymbolicLink() ? await stat(full).catch(() => null) : entry;
      if (!info) continue;
      if (info.isDirectory()) {
        await walk(full, relName);
      } else if (info.isFile() && /\.html?$/i.test(entry.name)) {
        found.push(relName);
      }
    }
  }
  await walk(root, '');
  return found.sort();
}

/** A static file server for `root` on 127.0.0.1 at a port the OS picks. */
function serve(root) {
  const server = http.createServer(async (req, res) => {
    const fail = (status, text) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${text}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    } catch {
      return fail(400, 'bad request');
    }
    let file = path.resolve(root, `.${pathname}`);
    if (file !== root && !file.startsWith(root + path.sep)) return fail(403, 'forbidden');
    try {
      let info = await stat(file);
      if (info.isDirectory()) {
        file = path.join(file, 'index.html');
        info = await stat(file);
      }
      if (!info.isFile()) return fail(404, 'not found');
      const type = CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'content-length': info.size });
      if (req.method === 'HEAD') return res.end();
      createReadStream(file)
        .on('error', () => res.destroy())
        .pipe(res);
    } catch {
      fail(404, 'not found');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function open(context, url, page) {
  const tab = await context.newPage();
  const response = await tab.goto(url, { waitUntil: 'load' });
  if (!response || !response.ok()) {
    throw new Fatal(`${page}: the site server answered ${response ? response.status() : 'nothing'}`);
  }
  return tab;
}

// Links into the site (same origin) that the server does not answer with 200.
async function brokenLinks(tab, base) {
  const origin = new URL(base).origin;
  const hrefs = await tab.evaluate(() => [...document.querySelectorAll('a[href]')].map((a) => a.href));
  const broken = [];
  for (const href of new Set(hrefs)) {
    const url = new URL(href);
    if (url.origin !== origin) continue;
    url.hash = '';
    const response = await fetch(url.href);
    if (!response.ok) broken.push(`${url.pathname} (${response.status})`);
  }
  return broken;
}

async function axe(tab, source) {
  await tab.evaluate(source);
  const results = await tab.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags } }),
    WCAG_TAGS,
  );
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    help_url: v.helpUrl,
    nodes: v.nodes.map((n) => n.target.map((t) => (Array.isArray(t) ? t.join(' ') : t)).join(' >>> ')),
  }));
}

/**
 * Whether the page scrolls sideways at the current width, and what sticks out: the outermost
 * elements whose box passes the right edge, and the elements whose text does (text that
 * cannot wrap overflows its box without widening it).
 */
async function overflow(tab) {
  return tab.evaluate(() => {
    const width = window.innerWidth;
    const scrollWidth = document.scrollingElement.scrollWidth;
    if (scrollWidth <= width) {
      return { overflow: false, scroll_width: scrollWidth, overflowing: [] };
    }
    const culprits = new Map();
    const note = (el, right) => {
      if ([...culprits.keys()].some((c) => c.contains(el))) return;
      culprits.set(el, Math.max(right, culprits.get(el) ?? 0));
    };
    for (const el of document.body.querySelectorAll('*')) {
      const right = el.getBoundingClientRect().right;
      if (right > width + 0.5) note(el, right);
    }
    const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      if (!node.textContent.trim()) continue;
      range.selectNodeContents(node);
      const right = range.getBoundingClientRect().right;
      if (right > width + 0.5) note(node.parentElement, right);
    }
    const describe = (el) => {
      const name =
        el.tagName.toLowerCase() +
        (el.id ? `#${el.id}` : '') +
        [...el.classList].map((c) => `.${c}`).join('');
      const text = el.textContent.replace(/\s+/g, ' ').trim();
      const snippet = text.length > 60 ? `${text.slice(0, 57)}...` : text;
      return `${name} "${snippet}"`;
    };
    return {
      overflow: true,
      scroll_width: scrollWidth,
      overflowing: [...culprits]
        .slice(0, 10)
        .map(([el, right]) => `${describe(el)} reaches ${Math.round(right)} px`),
    };
  });
}

async function firstH1(tab) {
  const h1 = tab.locator('h1').first();
  if ((await h1.count()) === 0) return null;
  const text = ((await h1.textContent()) ?? '').replace(/\s+/g, ' ').trim();
  return text === '' ? null : text;
}

main(process.argv.slice(2)).catch((e) => {
  const message = e instanceof Fatal ? e.message : (e && e.stack) || String(e);
  process.stderr.write(`site-check: ${message}\n`);
  process.exit(e instanceof Fatal ? e.status : 1);
});
