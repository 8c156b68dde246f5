// `sr3 eval`: make LR from HR photos, upscale them, and report PSNR / SSIM / consistency against bicubic.
import { readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { GpuContext } from '../gpu.ts';
import { imageToTensors } from '../image.ts';
import { consistencyMSE, psnr, ssim, tensorToImage } from '../metrics.ts';
import { Resampler } from '../resample.ts';
import { SAMPLERS, type SamplerKind } from '../sampler.ts';
import {
  bicubicUpscale,
  conditionRecipe,
  DEFAULT_SAMPLER,
  DEFAULT_STEPS,
  defaultSchedule,
  upscaleTensor,
  type Tensor3,
} from '../upscale.ts';
import { openDevice } from './device.ts';
import { readImage, type Image } from './image-io.ts';
import { openModel } from './model.ts';
import { writePng } from './png.ts';
import { progress } from './progress.ts';
import { DEFAULT_MODEL } from './upscale.ts';

const HELP = `usage: sr3 eval --data <dir of HR images> [--model f] [--crop 256] [--steps N | --schedule s] [--sampler s]
                [--seed n] [--no-consistency] [--limit K] [--sheet out.png] [--json]

For each PNG/JPEG in the folder: a centre crop (--crop, default 256) is the HR image; LR = HR downscaled by the
model's scale with its antialiased bicubic filter; the model and plain bicubic upscale LR back. Prints PSNR and SSIM
(0-255, SR3 reference convention) and the LR-consistency MSE (x1e-5, [0,1] units) per image and on average, and the
seconds per image. --sheet writes LR | bicubic | SR3 | HR side by side.`;

export async function downscale(ctx: GpuContext, rs: Resampler, t: Tensor3, factor: number): Promise<Tensor3> {
  const inp = ctx.upload(t.data);
  const n = (t.data.length / factor / factor) | 0;
  const out = ctx.buffer(n * 4);
  ctx.run([
    rs.downscale({
      input: inp,
      output: out,
      batch: 1,
      channels: t.channels,
      inH: t.height,
      inW: t.width,
      factor,
      kernel: { method: 'filter', a: -0.5 },
    }),
  ]);
  const data = await ctx.read(out, n * 4);
  inp.destroy();
  out.destroy();
  return { channels: t.channels, height: t.height / factor, width: t.width / factor, data };
}

export function centreCrop(img: Image, size: number, multiple: number): Image {
  const s = Math.min(size, Math.floor(Math.min(img.width, img.height) / multiple) * multiple);
  if (s < multiple) throw new Error(`image ${img.width}x${img.height} is too small for a crop`);
  const x0 = Math.floor((img.width - s) / 2);
  const y0 = Math.floor((img.height - s) / 2);
  const C = img.channels;
  const data = img.bitDepth === 16 ? new Uint16Array(s * s * C) : new Uint8Array(s * s * C);
  for (let y = 0; y < s; y++)
    data.set(img.data.subarray(((y0 + y) * img.width + x0) * C, ((y0 + y) * img.width + x0 + s) * C), y * s * C);
  return { width: s, height: s, channels: img.channels, bitDepth: img.bitDepth, data };
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      model: { type: 'string' },
      config: { type: 'string' },
      crop: { type: 'string', default: '256' },
      steps: { type: 'string' },
      schedule: { type: 'string' },
      sampler: { type: 'string', default: DEFAULT_SAMPLER },
      seed: { type: 'string', default: '0' },
      'no-consistency': { type: 'boolean' },
      limit: { type: 'string' },
      sheet: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!values.data) throw new Error(`--data is required\n\n${HELP}`);
  const crop = Number(values.crop);
  if (!Number.isInteger(crop) || crop < 16) throw new Error(`--crop must be an integer >= 16, got '${values.crop}'`);
  const steps = values.steps === undefined ? DEFAULT_STEPS : Number(values.steps);
  const sampler = values.sampler as SamplerKind;
  if (!SAMPLERS.includes(sampler)) throw new Error(`--sampler must be one of ${SAMPLERS.join(', ')}`);
  const schedule = values.schedule ?? defaultSchedule(steps, sampler);
  const seed = Number(values.seed);
  const consistency = !values['no-consistency'];
  let files: string[];
  try {
    files = readdirSync(values.data)
      .filter((f) => /\.(png|jpe?g)$/i.test(f))
      .sort()
      .map((f) => join(values.data!, f))
      .filter((f) => statSync(f).isFile());
  } catch (e) {
    throw new Error(`${values.data}: cannot list the folder (${(e as Error).message})`);
  }
  if (values.limit) files = files.slice(0, Number(values.limit));
  if (!files.length) throw new Error(`${values.data}: no PNG or JPEG images`);
  const model = await openModel(values.model ?? DEFAULT_MODEL, { config: values.config });
  const { scale, up } = conditionRecipe(model);
  const mult = Math.max(scale, 2 ** (model.config.channel_mults.length - 1));
  const ctx = await openDevice();
  const rows: Record<string, number | string>[] = [];
  const sheet: { lr: Tensor3; bic: Tensor3; sr: Tensor3; hr: Tensor3 }[] = [];
  try {
    const rs = await Resampler.create(ctx);
    if (!values.json)
      console.error(
        `eval: ${files.length} images, ${crop}px crops, ${scale}x, ${sampler}, ${schedule}, consistency ${consistency ? 'on' : 'off'}, on ${ctx.adapter.description}`,
      );
    for (const file of files) {
      const img = centreCrop(await readImage(file), crop, mult);
      const hr = imageToTensors(img, model.config.out_channel).color;
      const lr = await downscale(ctx, rs, hr, scale);
      const bar = progress(`${basename(file)} ${img.width}px`, 'steps', process.stderr, !!values.json);
      const t0 = performance.now();
      const [sr] = await upscaleTensor(ctx, model, lr, {
        schedule,
        sampler,
        seed,
        consistency,
        onProgress: (d, t) => bar.update(d, t),
      });
      const secs = (performance.now() - t0) / 1000;
      bar.done();
      const bic = await bicubicUpscale(ctx, lr, scale, up, true);
      const C = hr.channels;
      const u8 = (t: Tensor3) => tensorToImage(t.data, C, t.height, t.width);
      const H = u8(hr);
      const row: Record<string, number | string> = {
        image: basename(file, extname(file)),
        bicubic_psnr: psnr(u8(bic), H),
        bicubic_ssim: ssim(u8(bic), H),
        bicubic_consistency: (consistencyMSE(lr.data, (await downscale(ctx, rs, bic, scale)).data) / 4) * 1e5,
        sr3_psnr: psnr(u8(sr), H),
        sr3_ssim: ssim(u8(sr), H),
        sr3_consistency: (consistencyMSE(lr.data, (await downscale(ctx, rs, sr, scale)).data) / 4) * 1e5,
        seconds: secs,
      };
      rows.push(row);
      if (values.json)
        console.log(JSON.stringify({ ...row, device: ctx.adapter.description, schedule, sampler, consistency }));
      else console.error(fmtRow(row));
      if (values.sheet) sheet.push({ lr, bic, sr, hr });
    }
    const keys = Object.keys(rows[0]).filter((k) => k !== 'image');
    const mean: Record<string, number | string> = { image: 'mean' };
    for (const k of keys) mean[k] = rows.reduce((s, r) => s + (r[k] as number), 0) / rows.length;
    if (values.json)
      console.log(
        JSON.stringify({
          ...mean,
          images: rows.length,
          device: ctx.adapter.description,
          schedule,
          sampler,
          consistency,
        }),
      );
    else console.log(fmtRow(mean));
    if (values.sheet) await writeSheet(values.sheet, sheet, scale);
    return 0;
  } finally {
    ctx.destroy();
  }
}

function fmtRow(r: Record<string, number | string>): string {
  const f = (v: number | string, d = 2) => (typeof v === 'number' ? v.toFixed(d) : v);
  return (
    `${String(r.image).padEnd(24)} bicubic ${f(r.bicubic_psnr)} dB / SSIM ${f(r.bicubic_ssim, 3)} / cons ${f(r.bicubic_consistency, 1)}   ` +
    `SR3 ${f(r.sr3_psnr)} dB / SSIM ${f(r.sr3_ssim, 3)} / cons ${f(r.sr3_consistency, 1)}   ${f(r.seconds, 1)} s`
  );
}

/** Rows of LR (nearest) | bicubic | SR3 | HR. */
async function writeSheet(
  file: string,
  rows: { lr: Tensor3; bic: Tensor3; sr: Tensor3; hr: Tensor3 }[],
  scale: number,
): Promise<void> {
  const S = Math.max(...rows.map((r) => r.hr.width));
  const Hs = rows.reduce((s, r) => s + r.hr.height, 0);
  const W = 4 * S;
  const data = new Uint8Array(W * Hs * 3).fill(255);
  let y0 = 0;
  for (const r of rows) {
    const put = (t: Tensor3, col: number, nearest = 1) => {
      for (let y = 0; y < r.hr.height; y++)
        for (let x = 0; x < r.hr.width; x++)
          for (let c = 0; c < 3; c++) {
            const cc = Math.min(c, t.channels - 1);
            const v = t.data[(cc * t.height + Math.floor(y / nearest)) * t.width + Math.floor(x / nearest)];
            data[((y0 + y) * W + col * S + x) * 3 + c] = Math.round(((Math.min(1, Math.max(-1, v)) + 1) / 2) * 255);
          }
    };
    put(r.lr, 0, scale);
    put(r.bic, 1);
    put(r.sr, 2);
    put(r.hr, 3);
    y0 += r.hr.height;
  }
  await writePng(file, { width: W, height: Hs, channels: 3, bitDepth: 8, data });
}
