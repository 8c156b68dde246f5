// Side by side on the same crops: bicubic, the bundled model, a candidate model and UpscalerJS's esrgan-thick 4x (the
// JavaScript alternative; TF.js's pure-JS CPU backend, since @tensorflow/tfjs-node needs a download at install).
// For each evaluation photo: HR = the centre crop, LR = HR downscaled as `sr3 eval` does; every method upscales the
// same LR. Metrics: PSNR and SSIM (0-255, the SR3 reference's conventions), LR-consistency (MSE of the output
// downscaled against LR, x1e-5, [0,1] units), GMSD (gradient magnitude similarity deviation, lower is better), and
// seconds per image. A contact sheet: LR (nearest) | bicubic | bundled | candidate | esrgan-thick | HR.
// Set up once (its own package, bench/peer/node_modules): npm run peer:setup
//   npx tsx bench/peer/peer-eval.ts [--data /work/photos/eval] [--crop 64] [--limit 6] [--steps 20] [--candidate m]
//        [--bundled models/natural4x.safetensors] [--no-esrgan] [--sheet peer.png] [--json rows.jsonl]
// esrgan-thick is slow on a CPU (about 90 s for a 16x16 input on a loaded 2-core machine): keep --crop and --limit small.
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { imageToTensors } from '../../engine/image.ts';
import { consistencyMSE, gmsd, psnr, ssim, tensorToImage } from '../../engine/metrics.ts';
import { Resampler } from '../../engine/resample.ts';
import { bicubicUpscale, conditionRecipe, defaultSchedule, upscaleTensor, type Tensor3 } from '../../engine/upscale.ts';
import type { GpuContext } from '../../engine/gpu.ts';
import { openDevice } from '../../engine/node/device.ts';
import { centreCrop, downscale } from '../../engine/node/eval.ts';
import { readImage } from '../../engine/node/image-io.ts';
import { openModel } from '../../engine/node/model.ts';
import { writePng } from '../../engine/node/png.ts';
import type { SR3Model } from '../../weights-format/index.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: '/work/photos/eval' },
    crop: { type: 'string', default: '64' },
    limit: { type: 'string', default: '6' },
    steps: { type: 'string', default: '20' },
    seed: { type: 'string', default: '0' },
    candidate: { type: 'string' },
    'candidate-name': { type: 'string', default: 'candidate' },
    bundled: { type: 'string', default: 'models/natural4x.safetensors' },
    'no-esrgan': { type: 'boolean' },
    sheet: { type: 'string' },
    json: { type: 'string' },
  },
});
const crop = Number(values.crop);
const steps = Number(values.steps);
const schedule = defaultSchedule(steps);

/** UpscalerJS esrgan-thick 4x on TF.js's CPU backend; the model's files are read from node_modules. */
async function esrganThick(): Promise<(lr: Tensor3) => Promise<Tensor3>> {
  const tf = await import('@tensorflow/tfjs');
  const { default: Upscaler } = await import('upscaler');
  const { default: x4 } = await import('@upscalerjs/esrgan-thick/4x');
  // TF.js in Node without tfjs-node has no file:// loader: read model.json and its shards ourselves
  // (a router answers null for the URLs it does not handle; TF.js's type says IOHandler)
  tf.io.registerLoadRouter(((url: string | string[]) => {
    if (typeof url !== 'string' || !url.startsWith('file://')) return null;
    return {
      load: async () => {
        const file = fileURLToPath(url);
        const j = JSON.parse(readFileSync(file, 'utf8'));
        const specs = [];
        const parts: Buffer[] = [];
        for (const g of j.weightsManifest) {
          specs.push(...g.weights);
          for (const p of g.paths) parts.push(readFileSync(join(dirname(file), p)));
        }
        const all = Buffer.concat(parts);
        return {
          modelTopology: j.modelTopology,
          weightSpecs: specs,
          weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
          format: j.format,
        };
      },
    };
  }) as unknown as Parameters<typeof tf.io.registerLoadRouter>[0]);
  await tf.setBackend('cpu');
  const pkg = join(dirname(fileURLToPath(import.meta.url)), 'node_modules/@upscalerjs/esrgan-thick');
  const up = new Upscaler({ model: { ...x4, path: pathToFileURL(join(pkg, 'models/x4/model.json')).href } });
  return async (lr) => {
    const { height: h, width: w } = lr;
    const hwc = new Float32Array(h * w * 3);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < h * w; i++) hwc[i * 3 + c] = (Math.min(1, Math.max(-1, lr.data[c * h * w + i])) + 1) * 127.5;
    const out = (await up.execute(tf.tensor3d(hwc, [h, w, 3]), {
      output: 'tensor',
    })) as import('@tensorflow/tfjs').Tensor3D;
    const [H, W] = out.shape;
    const d = await out.data();
    out.dispose();
    const chw = new Float32Array(3 * H * W);
    for (let c = 0; c < 3; c++) for (let i = 0; i < H * W; i++) chw[c * H * W + i] = d[i * 3 + c] / 127.5 - 1;
    return { channels: 3, height: H, width: W, data: chw };
  };
}

type Method = { name: string; run: (lr: Tensor3) => Promise<Tensor3> };

async function main(): Promise<void> {
  const ctx: GpuContext = await openDevice();
  const rs = await Resampler.create(ctx);
  const models: [string, SR3Model][] = [['bundled', await openModel(resolve(values.bundled!))]];
  if (values.candidate) models.push([values['candidate-name']!, await openModel(resolve(values.candidate))]);
  const { scale, up } = conditionRecipe(models[0][1]);
  const methods: Method[] = [{ name: 'bicubic', run: (lr) => bicubicUpscale(ctx, lr, scale, up, true) }];
  for (const [name, m] of models) {
    if (conditionRecipe(m).scale !== scale)
      throw new Error(`${name} upscales ${conditionRecipe(m).scale}x, not ${scale}x`);
    methods.push({
      name,
      run: async (lr) => (await upscaleTensor(ctx, m, lr, { schedule, seed: Number(values.seed) }))[0],
    });
  }
  if (!values['no-esrgan']) methods.push({ name: 'esrgan-thick', run: await esrganThick() });
  const files = readdirSync(values.data!)
    .filter((f) => /\.(png|jpe?g)$/i.test(f))
    .sort()
    .slice(0, Number(values.limit));
  const rows: Record<string, Record<string, number>[]> = Object.fromEntries(methods.map((m) => [m.name, []]));
  const sheet: Tensor3[][] = [];
  if (values.json) writeFileSync(values.json, '');
  console.error(
    `peer eval: ${files.length} photos, ${crop}px HR crops (${crop / scale}px LR), SR3 ${schedule} with consistency, on ${ctx.adapter.description}`,
  );
  for (const f of files) {
    const img = centreCrop(await readImage(join(values.data!, f)), crop, 16);
    const hr = imageToTensors(img, 3).color;
    const lr = await downscale(ctx, rs, hr, scale);
    const H = tensorToImage(hr.data, 3, hr.height, hr.width);
    const line: Tensor3[] = [lr];
    for (const m of methods) {
      const t0 = performance.now();
      const out = await m.run(lr);
      const seconds = (performance.now() - t0) / 1000;
      const O = tensorToImage(out.data, 3, out.height, out.width);
      const row = {
        psnr: psnr(O, H),
        ssim: ssim(O, H),
        consistency: (consistencyMSE(lr.data, (await downscale(ctx, rs, out, scale)).data) / 4) * 1e5,
        gmsd: gmsd(O, H),
        seconds,
      };
      rows[m.name].push(row);
      if (values.json)
        appendFileSync(values.json, JSON.stringify({ image: basename(f, extname(f)), method: m.name, ...row }) + '\n');
      console.error(
        `  ${basename(f).padEnd(28)} ${m.name.padEnd(14)} ${row.psnr.toFixed(2)} dB  SSIM ${row.ssim.toFixed(3)}  cons ${row.consistency.toFixed(1)}  GMSD ${row.gmsd.toFixed(4)}  ${seconds.toFixed(1)} s`,
      );
      line.push(out);
    }
    line.push(hr);
    sheet.push(line);
  }
  console.log(
    `| method (${files.length} photos, ${crop}px crops, ${scale}x) | PSNR dB | SSIM | consistency x1e-5 | GMSD | s/image |`,
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const m of methods) {
    const r = rows[m.name];
    const mean = (k: string) => r.reduce((s, x) => s + x[k], 0) / r.length;
    console.log(
      `| ${m.name} | ${mean('psnr').toFixed(2)} | ${mean('ssim').toFixed(4)} | ${mean('consistency').toFixed(1)} | ${mean('gmsd').toFixed(4)} | ${mean('seconds').toFixed(1)} |`,
    );
  }
  if (values.sheet) await writeSheet(values.sheet, sheet, scale);
  ctx.destroy();
}

/** One row per photo: LR (nearest, scaled up) then each method's output then HR, with a 2px white gap. */
async function writeSheet(file: string, rows: Tensor3[][], scale: number): Promise<void> {
  const S = rows[0][rows[0].length - 1].width;
  const gap = 2;
  const cols = rows[0].length;
  const W = cols * (S + gap);
  const Ht = rows.length * (S + gap);
  const data = new Uint8Array(W * Ht * 3).fill(255);
  rows.forEach((line, r) => {
    line.forEach((t, c) => {
      const k = c === 0 ? scale : 1;
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++)
          for (let ch = 0; ch < 3; ch++) {
            const v = t.data[(ch * t.height + Math.floor(y / k)) * t.width + Math.floor(x / k)];
            data[((r * (S + gap) + y) * W + c * (S + gap) + x) * 3 + ch] = Math.round(
              ((Math.min(1, Math.max(-1, v)) + 1) / 2) * 255,
            );
          }
    });
  });
  await writePng(file, { width: W, height: Ht, channels: 3, bitDepth: 8, data });
}

await main();
