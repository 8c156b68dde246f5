// The engine in a real browser: the web bundle (scripts/build-web.mjs) served on 127.0.0.1 and driven in Debian's
// headless Chromium (/usr/bin/chromium, installed by scripts/setup-chromium.sh) through playwright-core. WebGPU there
// is SwiftShader (Chromium's software Vulkan); the same upscale runs in Node on Dawn (lavapipe here) and the two
// results are compared. Also: cancellation, the demo page end to end, and the messages for a browser without WebGPU
// and for a too-large image.
//
// No silent skips: a missing Chromium or a missing WebGPU adapter fails the test that needs it and says why.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { imageToTensors, tensorsToImage, type PixelImage } from '../engine/image.ts';
import { readImage } from '../engine/node/image-io.ts';
import { encodePng, type Image } from '../engine/node/png.ts';
import { upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { convertCheckpoint } from '../weights-format/index.ts';
import { nodeInflateRaw } from '../weights-format/node.ts';
import { buildWeb, launchChromium, ROOT, serveWeb } from '../scripts/screenshot.ts';
import { device, releaseDevice } from './helpers/device.ts';
import { FIXTURES } from './helpers/golden.ts';

// Measured on this machine (Node: Dawn on lavapipe; browser: Chromium 156 on SwiftShader; tiny golden model, 8x8 ->
// 32x32, 4 reference steps, seed 5): max |Node - browser| on the [-1, 1] output tensor 5.1e-4 (mean 3.8e-5); the 8-bit
// images differ by at most 1 level in 14 of 3072 values. The demo page (16x16 -> 64x64, 4 DDIM steps): at most 1 level.
// The tolerances leave room for other devices' rounding (fused multiply-add, exp/log precision) over a few steps.
const TENSOR_TOL = 2e-3;
const PIXEL_TOL = 1; // 8-bit levels
const STEPS = 4;
const SEED = 5;

const OUT = mkdtempSync(join(tmpdir(), 'sr3-web-test-'));
let server: { url: string; close: () => Promise<void> } | null = null;
let browser: Browser | null = null;
let setupError: Error | null = null;

/** An 8x8 RGB test picture: smooth gradients plus a little deterministic texture. */
function testPicture(w = 8, h = 8): PixelImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      data[i] = Math.round(255 * (x / (w - 1)));
      data[i + 1] = Math.round(255 * (y / (h - 1)));
      data[i + 2] = (x * 37 + y * 91) % 256;
    }
  return { width: w, height: h, channels: 3, bitDepth: 8, data };
}

async function setup(): Promise<void> {
  const opt = readFileSync(join(FIXTURES, 'golden/tiny/config.json'), 'utf8');
  const conv = convertCheckpoint(new Uint8Array(readFileSync(join(FIXTURES, 'golden/tiny/model_gen.pth'))), {
    optionsText: opt,
    inflate: nodeInflateRaw,
  });
  await buildWeb(OUT, false);
  mkdirSync(join(OUT, 'test'), { recursive: true });
  writeFileSync(join(OUT, 'test/tiny.safetensors'), conv.bytes);
  writeFileSync(
    join(OUT, 'test/blank.html'),
    '<!doctype html><meta charset="utf-8"><title>sr3 test</title><body></body>',
  );
  server = await serveWeb(OUT);
}

const ready = setup().catch((e) => {
  setupError = e as Error;
});

async function webgpuBrowser(): Promise<Browser> {
  await ready;
  if (setupError) throw setupError;
  browser ??= await launchChromium({ webgpu: true });
  return browser;
}

async function newPage(b: Browser): Promise<Page> {
  const page = await b.newPage();
  page.setDefaultTimeout(120_000);
  page.on('pageerror', (e) => console.error(`    page error: ${e.message}`));
  // tsx compiles this file with esbuild's keepNames, which wraps named functions in the callbacks below in __name():
  // give the page that helper.
  await page.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  return page;
}

test('the bundle has no Node code: no node: imports, no require, none of the Node-only modules', async () => {
  await ready;
  if (setupError) throw setupError;
  const files = [
    ...readdirSync(OUT).filter((f) => f.endsWith('.js')),
    ...readdirSync(join(OUT, 'assets'))
      .filter((f) => f.endsWith('.js'))
      .map((f) => `assets/${f}`),
  ];
  assert.ok(files.includes('sr3.js') && files.includes('main.js'), `built files: ${files.join(', ')}`);
  for (const f of files) {
    const js = readFileSync(join(OUT, f), 'utf8');
    assert.not.match(js, /from\s*["']node:|import\(\s*["']node:|\brequire\(/, `${f} imports Node`);
    assert.not.match(
      js,
      /engine\/node\/|weights-format\/node\.ts|weights-format\/cli\.ts/,
      `${f} bundles Node-only code`,
    );
  }
});

test('the build refuses Node code: engine/node/, weights-format/cli.ts, node: built-ins', () => {
  const probe = (entry: string) => {
    const src =
      `import { build } from 'esbuild'; import { noNodePlugin } from './scripts/build-web.mjs';` +
      `try { await build({ entryPoints: [${JSON.stringify(entry)}], bundle: true, write: false, platform: 'browser', format: 'esm', logLevel: 'silent', plugins: [noNodePlugin] }); console.log('BUILT'); }` +
      `catch (e) { console.log('REFUSED ' + (e.errors ?? []).map((x) => x.text).join(' | ')); }`;
    return execFileSync(process.execPath, ['--input-type=module', '-e', src], { cwd: ROOT, encoding: 'utf8' }).trim();
  };
  assert.match(probe('engine/node/upscale.ts'), /^REFUSED .*(Node-only|Node built-in)/);
  assert.match(probe('weights-format/cli.ts'), /^REFUSED .*Node/);
  assert.is(probe('engine/browser.ts'), 'BUILT');
});

test('in headless Chromium: WebGPU adapter, the tiny model from a URL, 8x8 -> 32x32 equal to the Node engine within tolerance', async () => {
  const b = await webgpuBrowser();
  const page = await newPage(b);
  await page.goto(`${server!.url}test/blank.html`);
  const pic = testPicture();
  const t0 = Date.now();
  const r = await page.evaluate(
    async ({ src, data, steps, seed }) => {
      const sr3 = await import(src);
      const st = await sr3.webGpuStatus();
      if (!st.ok) return { error: `no WebGPU adapter in the page: ${st.reason}` };
      const ctx = await sr3.openBrowserDevice();
      const model = await sr3.loadModelFrom('/test/tiny.safetensors');
      const img = { width: 8, height: 8, channels: 3, bitDepth: 8, data: new Uint8Array(data) };
      const progress: number[] = [];
      const [t] = await sr3.upscaleTensor(ctx, model, sr3.imageToTensors(img, 3).color, {
        steps,
        seed,
        onProgress: (d: number) => progress.push(d),
      });
      const res = await sr3.upscaleImage(ctx, model, img, { steps, seed });
      const out = res.images[0];
      const rgba = sr3.pixelImageToRgba(out);
      ctx.destroy();
      return {
        adapter: `${ctx.adapter.vendor} ${ctx.adapter.architecture} ${ctx.adapter.description}`.trim(),
        software: ctx.adapter.isSoftware,
        shape: [t.channels, t.height, t.width],
        tensor: Array.from(t.data as Float32Array),
        image: {
          width: out.width,
          height: out.height,
          channels: out.channels,
          data: Array.from(out.data as Uint8Array),
        },
        rgba: Array.from(rgba as Uint8ClampedArray).slice(0, 8),
        progress,
      };
    },
    { src: `${server!.url}sr3.js`, data: Array.from(pic.data), steps: STEPS, seed: SEED },
  );
  await page.close();
  if ('error' in r)
    throw new Error(
      `${r.error}. Chromium ${'/usr/bin/chromium'} was launched with --enable-unsafe-webgpu; see scripts/screenshot.ts`,
    );
  const browserSecs = (Date.now() - t0) / 1000;

  const ctx = await device();
  const model = convertCheckpoint(new Uint8Array(readFileSync(join(FIXTURES, 'golden/tiny/model_gen.pth'))), {
    optionsText: readFileSync(join(FIXTURES, 'golden/tiny/config.json'), 'utf8'),
    inflate: nodeInflateRaw,
  }).model;
  const [ref] = await upscaleTensor(ctx, model, imageToTensors(pic, 3).color, { steps: STEPS, seed: SEED });
  const refImg = tensorsToImage(ref, null, pic);

  assert.equal(r.shape, [3, 32, 32]);
  assert.equal(r.progress, [1, 2, 3, 4], 'one progress call per step on a software device');
  let maxT = 0;
  let sumT = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(ref.data[i] - r.tensor[i]);
    if (!(d <= maxT)) maxT = Number.isNaN(d) ? Infinity : d;
    sumT += d;
  }
  let maxP = 0;
  let diffP = 0;
  assert.equal([r.image.width, r.image.height, r.image.channels], [32, 32, 3]);
  for (let i = 0; i < refImg.data.length; i++) {
    const d = Math.abs(refImg.data[i] - r.image.data[i]);
    maxP = Math.max(maxP, d);
    if (d) diffP++;
  }
  console.log(
    `    browser (${r.adapter}${r.software ? ', software' : ''}, ${browserSecs.toFixed(1)} s) vs Node (${ctx.adapter.description}): ` +
      `tensor max |diff| ${maxT.toExponential(2)}, mean ${(sumT / ref.data.length).toExponential(2)}; 8-bit max ${maxP}, ${diffP}/${refImg.data.length} values differ`,
  );
  assert.ok(maxT <= TENSOR_TOL, `max |Node - browser| = ${maxT} > ${TENSOR_TOL}`);
  assert.ok(maxP <= PIXEL_TOL, `8-bit images differ by ${maxP} levels > ${PIXEL_TOL}`);
  // RGBA for ImageData: opaque, the same colours
  assert.equal(r.rgba.slice(0, 3), Array.from(r.image.data.slice(0, 3)));
  assert.is(r.rgba[3], 255);
});

test('in headless Chromium: an AbortSignal cancels between steps; an aborted signal refuses to start', async () => {
  const b = await webgpuBrowser();
  const page = await newPage(b);
  await page.goto(`${server!.url}test/blank.html`);
  const r = await page.evaluate(async (src) => {
    const sr3 = await import(src);
    const ctx = await sr3.openBrowserDevice();
    const model = await sr3.loadModelFrom(await (await fetch('/test/tiny.safetensors')).arrayBuffer());
    const img = { width: 8, height: 8, channels: 3, bitDepth: 8, data: new Uint8Array(8 * 8 * 3).fill(128) };
    const ac = new AbortController();
    const seen: number[] = [];
    let err = '';
    try {
      await sr3.upscaleImage(ctx, model, img, {
        steps: 12,
        signal: ac.signal,
        onProgress: (d: number) => {
          seen.push(d);
          if (d === 2) ac.abort(new DOMException('stop', 'AbortError'));
        },
      });
    } catch (e) {
      err = (e as Error).name;
    }
    let err2 = '';
    try {
      await sr3.upscaleImage(ctx, model, img, { steps: 12, signal: AbortSignal.abort() });
    } catch (e) {
      err2 = (e as Error).name;
    }
    ctx.destroy();
    return { seen, err, err2 };
  }, `${server!.url}sr3.js`);
  await page.close();
  assert.equal(r.seen, [1, 2]);
  assert.is(r.err, 'AbortError');
  assert.is(r.err2, 'AbortError');
});

test('the demo page: a picked file, Upscale, bicubic and SR3 side by side, PNG download, Cancel; same pixels as Node', async () => {
  const b = await webgpuBrowser();
  const page = await newPage(b);
  // a 16x16 crop of the example picture (the face), picked through the page's file input
  const full = await readImage(join(ROOT, 'examples/astronaut-32.png'));
  const img: PixelImage = { width: 16, height: 16, channels: 3, bitDepth: 8, data: new Uint8Array(16 * 16 * 3) };
  for (let y = 0; y < 16; y++)
    img.data.set(full.data.subarray(((y + 6) * 32 + 8) * 3, ((y + 6) * 32 + 24) * 3), y * 16 * 3);
  const q = new URLSearchParams({ model: 'test/tiny.safetensors', steps: String(STEPS), seed: '3', sampler: 'ddim' });
  await page.goto(`${server!.url}?${q}`);
  await page.waitForFunction(() => ['ready', 'error', 'no-webgpu'].includes(document.body.dataset.state ?? ''), null, {
    polling: 100,
  });
  await page.setInputFiles('#file', { name: 'face.png', mimeType: 'image/png', buffer: encodePng(img as Image) });
  await page.waitForFunction(() => !(document.getElementById('run') as HTMLButtonElement).disabled, null, {
    polling: 100,
  });
  assert.match((await page.textContent('#input-info')) ?? '', /face\.png: 16x16 -> 64x64/);
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error', 'too-large'].includes(document.body.dataset.state ?? ''), null, {
    polling: 200,
  });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert.is(state, 'done', `state ${state}: ${await page.textContent('#message')}`);
  assert.ok(await page.isVisible('#download'));
  assert.match((await page.textContent('#progress-text')) ?? '', /done in/);
  const got = await page.evaluate(() => {
    const out: Record<string, { w: number; h: number; data: number[] }> = {};
    for (const id of ['sr3-canvas', 'bicubic-canvas']) {
      const c = document.getElementById(id) as HTMLCanvasElement;
      out[id] = {
        w: c.width,
        h: c.height,
        data: Array.from(c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data),
      };
    }
    return {
      sr3: out['sr3-canvas'],
      bicubic: out['bicubic-canvas'],
      caption: document.getElementById('cap-sr3')!.textContent,
    };
  });
  const download = await Promise.all([page.waitForEvent('download'), page.click('#download')]).then(([d]) => d);
  const pngPath = join(OUT, 'download.png');
  await download.saveAs(pngPath);
  // Cancel: a long run stopped from the page after its first step
  await page.fill('#steps', '200');
  await page.click('#run');
  await page.waitForFunction(
    () => /^step [1-9]/.test(document.getElementById('progress-text')!.textContent ?? ''),
    null,
    { polling: 50 },
  );
  assert.ok(await page.isEnabled('#cancel'));
  await page.click('#cancel');
  await page.waitForFunction(() => document.body.dataset.state !== 'running', null, { polling: 50 });
  assert.is(await page.evaluate(() => document.body.dataset.state), 'cancelled');
  assert.match((await page.textContent('#message')) ?? '', /Cancelled/);
  assert.ok(await page.isEnabled('#run'), 'a new run can start after a cancel');
  await page.close();
  assert.is(download.suggestedFilename(), 'face_sr4x.png');
  const png = await readImage(pngPath);
  assert.equal([png.width, png.height], [64, 64]);
  assert.equal([got.sr3.w, got.sr3.h, got.bicubic.w, got.bicubic.h], [64, 64, 64, 64]);

  // Node: the same picture through the same model, seed and sampler
  const ctx = await device();
  const model = convertCheckpoint(new Uint8Array(readFileSync(join(FIXTURES, 'golden/tiny/model_gen.pth'))), {
    optionsText: readFileSync(join(FIXTURES, 'golden/tiny/config.json'), 'utf8'),
    inflate: nodeInflateRaw,
  }).model;
  const [ref]: Tensor3[] = await upscaleTensor(ctx, model, imageToTensors(img, 3).color, {
    steps: STEPS,
    seed: 3,
    sampler: 'ddim',
  });
  const refImg = tensorsToImage(ref, null, img);
  let maxCanvas = 0;
  let maxPng = 0;
  for (let p = 0; p < 64 * 64; p++)
    for (let c = 0; c < 3; c++) {
      maxCanvas = Math.max(maxCanvas, Math.abs(got.sr3.data[p * 4 + c] - refImg.data[p * 3 + c]));
      maxPng = Math.max(maxPng, Math.abs(png.data[p * png.channels + c] - refImg.data[p * 3 + c]));
    }
  console.log(
    `    demo page vs Node, 8-bit: canvas max |diff| ${maxCanvas}, downloaded PNG max |diff| ${maxPng} (${got.caption})`,
  );
  assert.ok(maxCanvas <= PIXEL_TOL, `canvas differs from Node by ${maxCanvas}`);
  assert.ok(maxPng <= PIXEL_TOL, `PNG differs from Node by ${maxPng}`);
  // bicubic and SR3 differ (the model did something)
  assert.ok(got.sr3.data.some((v, i) => v !== got.bicubic.data[i]));
});

test('the demo page refuses a too-large image with a message', async () => {
  const b = await webgpuBrowser();
  const page = await newPage(b);
  await page.goto(
    `${server!.url}?${new URLSearchParams({ model: 'test/tiny.safetensors', example: '1', maxpixels: '256' })}`,
  );
  await page.waitForFunction(
    () => ['too-large', 'error', 'no-webgpu'].includes(document.body.dataset.state ?? ''),
    null,
    { polling: 100 },
  );
  assert.is(await page.evaluate(() => document.body.dataset.state), 'too-large');
  assert.ok(await page.isVisible('#message'));
  assert.match((await page.textContent('#message')) ?? '', /too large: 32x32/);
  assert.ok(await page.isDisabled('#run'));
  await page.close();
});

test('without WebGPU the demo page says so (navigator.gpu removed; Chromium without --enable-unsafe-webgpu)', async () => {
  await ready;
  if (setupError) throw setupError;
  const check = async (b: Browser, removeGpu: boolean) => {
    const page = await newPage(b);
    if (removeGpu)
      await page.addInitScript({
        content:
          "Object.defineProperty(Navigator.prototype, 'gpu', { get() { return undefined; }, configurable: true });",
      });
    await page.goto(`${server!.url}?model=test/tiny.safetensors`);
    await page.waitForFunction(
      () => ['no-webgpu', 'ready', 'error'].includes(document.body.dataset.state ?? ''),
      null,
      { polling: 100 },
    );
    const state = await page.evaluate(() => document.body.dataset.state);
    const msg = (await page.textContent('#message')) ?? '';
    const visible = await page.isVisible('#message');
    const disabled = await page.isDisabled('#run');
    await page.close();
    return { state, msg, visible, disabled };
  };
  const noGpu = await check(await webgpuBrowser(), true);
  assert.is(noGpu.state, 'no-webgpu');
  assert.ok(noGpu.visible);
  assert.match(noGpu.msg, /needs WebGPU.*not available in this browser/);
  assert.ok(noGpu.disabled);

  const plain = await launchChromium({ webgpu: false });
  try {
    const r = await check(plain, false);
    assert.is(r.state, 'no-webgpu', `message: ${r.msg}`);
    assert.ok(r.visible);
    assert.match(r.msg, /needs WebGPU/);
  } finally {
    await plain.close();
  }
});

test.after(async () => {
  await ready;
  await browser?.close();
  await server?.close();
  await releaseDevice();
  rmSync(OUT, { recursive: true, force: true });
});

test.run();
