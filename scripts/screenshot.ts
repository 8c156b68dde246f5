// The README's screenshot of the demo page after an upscale, in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; never a downloaded browser). Also exports the browser/server helpers test/browser.test.ts uses.
//
//   npx tsx scripts/screenshot.ts [-o docs/demo.png] [--steps 20] [--sampler ddim] [--no-build]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Browser, LaunchOptions } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CHROMIUM = process.env.SR3_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Chromium flags: WebGPU without an allow-list (`--enable-unsafe-webgpu`; headless Chromium here then gets core WebGPU
 * on SwiftShader), and no background networking (this machine's closed network refuses it, noisily). Playwright adds
 * --headless and, as root, --no-sandbox.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

/** Launch Debian's Chromium headless, with or without WebGPU; a missing browser names the set-up step. */
export async function launchChromium(opts: { webgpu?: boolean; extraArgs?: string[] } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: run 'bash scripts/setup-chromium.sh' (installs Debian's chromium package)`,
    );
  }
  const { chromium } = await import('playwright-core');
  const launch: LaunchOptions = {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.webgpu === false ? [] : WEBGPU_ARGS), ...(opts.extraArgs ?? [])],
  };
  // (Playwright gives it a fresh, temporary profile: a new empty --user-data-dir.)
  return chromium.launch(launch);
}

/** Build the web bundle (scripts/build-web.mjs) into `outdir`. */
export async function buildWeb(outdir: string, copyModel = true): Promise<void> {
  const args = ['scripts/build-web.mjs', '--outdir', outdir, ...(copyModel ? [] : ['--no-model'])];
  const { code, out } = await runNode(args);
  if (code !== 0) throw new Error(`npm run build:web failed (exit ${code}):\n${out}`);
}

function runNode(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => res({ code: code ?? 1, out }));
  });
}

/** Serve a build with the demo server (scripts/build-web.mjs --serve-only) on 127.0.0.1, any free port. */
export async function serveWeb(outdir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const p: ChildProcess = spawn(
    process.execPath,
    ['scripts/build-web.mjs', '--serve-only', '--outdir', outdir, '--port', '0'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`the demo server did not start:\n${out}`)), 15000);
    p.stdout!.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    p.stderr!.on('data', (d) => (out += d));
    p.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`the demo server exited (${code}):\n${out}`));
    });
  });
  return {
    url,
    close: () =>
      new Promise<void>((res) => {
        if (p.exitCode !== null) return res();
        p.once('exit', () => res());
        p.kill('SIGTERM');
      }),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', short: 'o', default: join(ROOT, 'docs/demo.png') },
      steps: { type: 'string', default: '20' },
      sampler: { type: 'string', default: 'ddim' },
      seed: { type: 'string', default: '0' },
      'no-build': { type: 'boolean' },
      outdir: { type: 'string', default: join(ROOT, 'dist/web') },
      timeout: { type: 'string', default: '600' },
    },
  });
  if (!values['no-build']) await buildWeb(values.outdir);
  const server = await serveWeb(values.outdir);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1 });
    page.on('console', (m) => {
      if (m.type() === 'error') console.error(`page: ${m.text()}`);
    });
    const q = new URLSearchParams({
      example: '1',
      autorun: '1',
      steps: values.steps,
      sampler: values.sampler,
      seed: values.seed,
    });
    const t0 = Date.now();
    await page.goto(`${server.url}?${q}`);
    await page.waitForFunction(
      () => ['done', 'error', 'no-webgpu', 'too-large'].includes(document.body.dataset.state ?? ''),
      null,
      {
        timeout: Number(values.timeout) * 1000,
        polling: 500,
      },
    );
    const state = await page.evaluate(() => document.body.dataset.state);
    if (state !== 'done') throw new Error(`the demo ended in state '${state}': ${await page.textContent('#message')}`);
    console.log(
      `upscaled in the page in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${await page.textContent('#progress-text')}`,
    );
    mkdirSync(dirname(resolve(values.out)), { recursive: true });
    await page.screenshot({ path: values.out, fullPage: true });
    console.log(`wrote ${values.out}`);
  } finally {
    await browser.close();
    await server.close();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`screenshot: ${(e as Error).message}`);
    process.exit(1);
  });
}
