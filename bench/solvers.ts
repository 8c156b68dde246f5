// Quality against time for sampler x steps: the table that picks the default (sampler, steps).
//
//   npx tsx bench/solvers.ts --data /work/photos/eval [--model f] [--crop 64] [--limit 9] [--steps 4,6,8,10,15,20]
//       [--configs reference:linear,dpmpp-2m:logsnr@4/8,...] [--baseline reference:linear:100] [--long 50,100]
//       [--consistency on,off] [--off unipc:logsnr@10,...] [--seed 0] [--out rows.jsonl] [--json]
//
// For each photo: a centre crop (--crop) is the HR image, LR = HR downscaled by the model's scale (as `sr3 eval`);
// every config (sampler:schedule kind, @counts to give it its own step counts) is run at every --steps count, the
// baseline's config also at the --long counts, in each --consistency mode; --off adds runs without consistency only
// (to size a sweep for a slow device). The baseline runs first, then the rest by step count. Per image: PSNR and SSIM (0-255, the SR3 reference's convention), LR consistency
// (MSE x1e-5 as `sr3 eval`), GMSD, the detail ratio, and seconds (the whole upscaleTensor call, build included).
// Rows go to --out as JSON lines as they finish; rerunning with the same --out skips the rows it already has, so
// a sweep can be stopped and resumed. At the end: the mean table (markdown) and the default the rule picks.
//
// Why GMSD: PSNR and SSIM reward the blurry mean of the plausible images, and SR3's point is detail. GMSD (gradient
// magnitude similarity deviation, Xue et al. 2014) compares local gradient magnitudes, which blur removes, and
// tracks human judgement better than SSIM on the standard databases while costing a few filters. Lower is better.
// The detail ratio (mean squared Laplacian of the output over the HR's) says which way a difference goes: < 1
// blurrier than the photo, > 1 noisier.
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { imageToTensors } from '../engine/image.ts';
import { consistencyMSE, psnr, ssim, tensorToImage, type MetricImage } from '../engine/metrics.ts';
import { openDevice } from '../engine/node/device.ts';
import { readImage, type Image } from '../engine/node/image-io.ts';
import { openModel } from '../engine/node/model.ts';
import { downscale } from '../engine/node/eval.ts';
import { DEFAULT_MODEL } from '../engine/node/upscale.ts';
import { Resampler } from '../engine/resample.ts';
import { SAMPLERS, type SamplerKind } from '../engine/sampler.ts';
import { conditionRecipe, defaultSchedule, upscaleTensor } from '../engine/upscale.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: '/work/photos/eval' },
    model: { type: 'string' },
    crop: { type: 'string', default: '64' },
    limit: { type: 'string' },
    steps: { type: 'string', default: '4,6,8,10,15,20' },
    configs: {
      type: 'string',
      default:
        'reference:linear,ddim:linear,dpmpp-2m:logsnr,dpmpp-2m:karras,unipc:logsnr,unipc:karras,unipc-bh1:logsnr',
    },
    baseline: { type: 'string', default: 'reference:linear:100' },
    long: { type: 'string', default: '50,100' },
    consistency: { type: 'string', default: 'on,off' },
    off: { type: 'string', default: '' },
    seed: { type: 'string', default: '0' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  },
});

const list = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const ints = (s: string) =>
  list(s).map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 2) throw new Error(`step counts must be integers >= 2, got '${x}'`);
    return n;
  });

interface Config {
  sampler: SamplerKind;
  kind: string;
  counts?: number[];
}
const parseConfig = (text: string): Config => {
  const [s, at] = text.split('@');
  // sampler:kind, or sampler:kind:sigmaMin:sigmaMax for logsnr/karras over another range
  const [sampler, kind, ...range] = s.split(':');
  if (!SAMPLERS.includes(sampler as SamplerKind))
    throw new Error(`unknown sampler '${sampler}' in '${s}' (${SAMPLERS.join(', ')})`);
  if (!['linear', 'logsnr', 'karras'].includes(kind))
    throw new Error(`schedule kind must be linear, logsnr or karras in '${s}'`);
  if (range.length && (kind === 'linear' || range.length !== 2))
    throw new Error(`'${s}': only logsnr and karras take a range, as kind:sigmaMin:sigmaMax`);
  return {
    sampler: sampler as SamplerKind,
    kind: [kind, ...range].join(':'),
    counts: at ? ints(at.replace(/\//g, ',')) : undefined,
  };
};

/** The schedule for a config and step count: the sampler's default at that count, of the config's kind. */
function scheduleFor(c: Config, steps: number): string {
  if (c.kind === 'linear') return defaultSchedule(steps, 'reference');
  const [kind, ...range] = c.kind.split(':');
  return [kind, steps, ...range].join(':');
}

function centreCrop(img: Image, size: number): Image {
  const s = Math.min(size, img.width, img.height);
  const x0 = Math.floor((img.width - s) / 2);
  const y0 = Math.floor((img.height - s) / 2);
  const C = img.channels;
  const data = img.bitDepth === 16 ? new Uint16Array(s * s * C) : new Uint8Array(s * s * C);
  for (let y = 0; y < s; y++)
    data.set(img.data.subarray(((y0 + y) * img.width + x0) * C, ((y0 + y) * img.width + x0 + s) * C), y * s * C);
  return { width: s, height: s, channels: C, bitDepth: img.bitDepth, data };
}

/** Luma (BT.601) of an interleaved 0-255 image. */
function luma(im: MetricImage): Float64Array {
  const n = im.width * im.height;
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = i * im.channels;
    y[i] = im.channels >= 3 ? 0.299 * im.data[p] + 0.587 * im.data[p + 1] + 0.114 * im.data[p + 2] : im.data[p];
  }
  return y;
}

/**
 * GMSD (Xue, Zhang, Mou, Bovik 2014) as their reference code: luma, 2x2 average then downsample by 2, Prewitt
 * gradients (/3), GMS = (2 m1 m2 + c) / (m1^2 + m2^2 + c) with c = 170 (0-255 scale), GMSD = the GMS map's standard
 * deviation; over the valid region (no padding). engine/metrics.ts's gmsd (landed later, by #19) follows the MATLAB code
 * with its zero padding: the borders make its figures differ slightly; this one made bench/README.md's table.
 */
export function gmsd(a: MetricImage, b: MetricImage): number {
  const grad = (im: MetricImage) => {
    const y = luma(im);
    const w = Math.floor(im.width / 2);
    const h = Math.floor(im.height / 2);
    const d = new Float64Array(w * h);
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const p = 2 * i * im.width + 2 * j;
        d[i * w + j] = (y[p] + y[p + 1] + y[p + im.width] + y[p + im.width + 1]) / 4;
      }
    const m = new Float64Array((w - 2) * (h - 2));
    for (let i = 1; i < h - 1; i++)
      for (let j = 1; j < w - 1; j++) {
        let gx = 0;
        let gy = 0;
        for (let k = -1; k <= 1; k++) {
          gx += d[(i + k) * w + j - 1] - d[(i + k) * w + j + 1];
          gy += d[(i - 1) * w + j + k] - d[(i + 1) * w + j + k];
        }
        m[(i - 1) * (w - 2) + j - 1] = Math.hypot(gx / 3, gy / 3);
      }
    return m;
  };
  const ma = grad(a);
  const mb = grad(b);
  const c = 170;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < ma.length; i++) {
    const g = (2 * ma[i] * mb[i] + c) / (ma[i] ** 2 + mb[i] ** 2 + c);
    s += g;
    s2 += g * g;
  }
  const mean = s / ma.length;
  return Math.sqrt(Math.max(0, s2 / ma.length - mean * mean));
}

/** Mean squared 4-neighbour Laplacian of the luma (interior pixels): high-frequency energy. */
function hfEnergy(im: MetricImage): number {
  const y = luma(im);
  const W = im.width;
  let s = 0;
  let n = 0;
  for (let i = 1; i < im.height - 1; i++)
    for (let j = 1; j < W - 1; j++) {
      const l = 4 * y[i * W + j] - y[(i - 1) * W + j] - y[(i + 1) * W + j] - y[i * W + j - 1] - y[i * W + j + 1];
      s += l * l;
      n++;
    }
  return s / n;
}

interface Row {
  image: string;
  sampler: string;
  kind: string;
  schedule: string;
  steps: number;
  consistency: boolean;
  psnr: number;
  ssim: number;
  cons: number;
  gmsd: number;
  detail: number;
  seconds: number;
  device?: string;
}

const key = (r: { image: string; sampler: string; kind: string; steps: number; consistency: boolean }) =>
  `${r.image}|${r.sampler}|${r.kind}|${r.steps}|${r.consistency}`;

async function main() {
  const crop = Number(values.crop);
  const configs = list(values.configs!).map(parseConfig);
  const bparts = values.baseline!.split(':');
  const baseline = { ...parseConfig(bparts.slice(0, -1).join(':')), steps: Number(bparts[bparts.length - 1]) };
  const steps = ints(values.steps!);
  const long = ints(values.long!);
  const modes = list(values.consistency!).map((m) => {
    if (m !== 'on' && m !== 'off') throw new Error(`--consistency takes on,off`);
    return m === 'on';
  });
  const seed = Number(values.seed);
  let files = readdirSync(values.data!)
    .filter((f) => /\.(png|jpe?g)$/i.test(f))
    .sort()
    .map((f) => join(values.data!, f));
  if (values.limit) files = files.slice(0, Number(values.limit));
  if (!files.length) throw new Error(`${values.data}: no photos`);
  const done = new Map<string, Row>();
  if (values.out && existsSync(values.out)) {
    for (const line of readFileSync(values.out, 'utf8').split('\n'))
      if (line.trim()) {
        const r = JSON.parse(line) as Row;
        done.set(key(r), r);
      }
  }
  // the runs: every config at every count; the baseline config at the long counts too
  const runs: (Config & { steps: number; consistency: boolean })[] = [];
  const isBase = (c: Config) => c.sampler === baseline.sampler && c.kind === baseline.kind;
  for (const consistency of modes) runs.push({ ...baseline, steps: baseline.steps, consistency });
  const add = (c: Config, counts: number[], consistency: boolean) => {
    for (const n of counts)
      if (
        !runs.some(
          (r) =>
            isBase(r) === isBase(c) &&
            r.sampler === c.sampler &&
            r.kind === c.kind &&
            r.steps === n &&
            r.consistency === consistency,
        )
      )
        runs.push({ ...c, steps: n, consistency });
  };
  for (const c of configs)
    for (const consistency of modes) add(c, [...(c.counts ?? steps), ...(isBase(c) ? long : [])], consistency);
  for (const c of list(values.off!).map(parseConfig)) add(c, c.counts ?? steps, false);
  const ordered = [
    ...runs.slice(0, modes.length),
    ...runs.slice(modes.length).sort((a, b) => a.steps - b.steps || Number(b.consistency) - Number(a.consistency)),
  ];
  const modelFile = values.model ?? DEFAULT_MODEL;
  const model = await openModel(modelFile);
  const { scale } = conditionRecipe(model);
  const ctx = await openDevice();
  const rows: Row[] = [];
  try {
    const rs = await Resampler.create(ctx);
    const total = files.length * runs.length;
    const evals = files.length * runs.reduce((s, r) => s + r.steps, 0);
    console.error(
      `solvers: ${files.length} photos, ${crop}px crops, ${runs.length} runs each (${total} upscales, ${evals} model evaluations; ${done.size} rows done before), ${basename(modelFile)}, on ${ctx.adapter.description}`,
    );
    // every photo's HR, LR and metric image, made once
    const photos = [];
    for (const file of files) {
      const img = centreCrop(await readImage(file), crop);
      const hr = imageToTensors(img, model.config.out_channel).color;
      const lr = await downscale(ctx, rs, hr, scale);
      const H = tensorToImage(hr.data, hr.channels, hr.height, hr.width);
      photos.push({ image: basename(file, extname(file)), lr, H, hfH: hfEnergy(H) });
    }
    let i = 0;
    // runs outside, photos inside: an interrupted sweep has whole rows (every photo) for the runs it finished
    for (const run of ordered)
      for (const { image, lr, H, hfH } of photos) {
        const consistency = run.consistency;
        i++;
        const k = key({ image, sampler: run.sampler, kind: run.kind, steps: run.steps, consistency });
        if (done.has(k)) {
          rows.push(done.get(k)!);
          continue;
        }
        const schedule = scheduleFor(run, run.steps);
        const t0 = performance.now();
        const [sr] = await upscaleTensor(ctx, model, lr, { schedule, sampler: run.sampler, seed, consistency });
        const seconds = (performance.now() - t0) / 1000;
        const S = tensorToImage(sr.data, sr.channels, sr.height, sr.width);
        const row: Row = {
          image,
          sampler: run.sampler,
          kind: run.kind,
          schedule,
          steps: run.steps,
          consistency,
          psnr: psnr(S, H),
          ssim: ssim(S, H),
          cons: (consistencyMSE(lr.data, (await downscale(ctx, rs, sr, scale)).data) / 4) * 1e5,
          gmsd: gmsd(S, H),
          detail: hfEnergy(S) / hfH,
          seconds,
          device: ctx.adapter.description,
        };
        rows.push(row);
        if (values.out) appendFileSync(values.out, `${JSON.stringify(row)}\n`);
        if (values.json) console.log(JSON.stringify(row));
        console.error(
          `[${i}/${total}] ${image} ${run.sampler} ${schedule} cons ${consistency ? 'on' : 'off'}: ${row.psnr.toFixed(2)} dB, SSIM ${row.ssim.toFixed(4)}, GMSD ${row.gmsd.toFixed(4)}, detail ${row.detail.toFixed(2)}, ${seconds.toFixed(1)} s`,
        );
      }
  } finally {
    ctx.destroy();
  }
  console.log(table(rows, baseline));
}

/** Means over the photos per (sampler, kind, steps), both consistency modes side by side, and the rule's pick. */
export function table(rows: Row[], baseline: Config & { steps: number }): string {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const k = `${r.sampler}|${r.kind}|${r.steps}|${r.consistency}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const mean = (rs: Row[], f: keyof Row) => rs.reduce((s, r) => s + (r[f] as number), 0) / rs.length;
  const stat = (sampler: string, kind: string, steps: number, c: boolean) => {
    const rs = groups.get(`${sampler}|${kind}|${steps}|${c}`);
    if (!rs) return null;
    return {
      n: rs.length,
      psnr: mean(rs, 'psnr'),
      ssim: mean(rs, 'ssim'),
      cons: mean(rs, 'cons'),
      gmsd: mean(rs, 'gmsd'),
      detail: mean(rs, 'detail'),
      seconds: mean(rs, 'seconds'),
    };
  };
  const combos = [...new Set(rows.map((r) => `${r.sampler}|${r.kind}|${r.steps}`))].map((s) => {
    const [sampler, kind, steps] = s.split('|');
    return { sampler, kind, steps: Number(steps) };
  });
  combos.sort((a, b) => a.sampler.localeCompare(b.sampler) || a.kind.localeCompare(b.kind) || a.steps - b.steps);
  const f = (v: number | undefined, d: number) => (v === undefined ? '' : v.toFixed(d));
  const lines = [
    '| sampler | schedule | steps | PSNR | SSIM | consistency | GMSD | detail | s/image | PSNR, no cons. | SSIM, no cons. | consistency, no cons. | GMSD, no cons. | detail, no cons. | s/image, no cons. |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of combos) {
    const on = stat(c.sampler, c.kind, c.steps, true);
    const off = stat(c.sampler, c.kind, c.steps, false);
    lines.push(
      `| ${c.sampler} | ${c.kind} | ${c.steps} | ${f(on?.psnr, 2)} | ${f(on?.ssim, 4)} | ${f(on?.cons, 2)} | ${f(on?.gmsd, 4)} | ${f(on?.detail, 2)} | ${f(on?.seconds, 1)} | ` +
        `${f(off?.psnr, 2)} | ${f(off?.ssim, 4)} | ${f(off?.cons, 1)} | ${f(off?.gmsd, 4)} | ${f(off?.detail, 2)} | ${f(off?.seconds, 1)} |`,
    );
  }
  const base = stat(baseline.sampler, baseline.kind, baseline.steps, true);
  if (base) {
    // the rule: fewest model evaluations within 0.1 dB PSNR and 0.005 SSIM of the baseline, consistency no worse
    // (at most the baseline's + 10%: with the projection every sampler's is near zero, and noise decides the rest)
    const ok = combos
      .map((c) => ({ ...c, s: stat(c.sampler, c.kind, c.steps, true)! }))
      .filter(
        (c) =>
          c.s && c.s.psnr >= base.psnr - 0.1 && c.s.ssim >= base.ssim - 0.005 && c.s.cons <= base.cons * 1.1 + 1e-9,
      )
      .sort((a, b) => a.steps - b.steps || b.s.psnr - a.s.psnr);
    lines.push(
      '',
      `baseline ${baseline.sampler} ${baseline.kind} ${baseline.steps} steps: ${base.psnr.toFixed(2)} dB, SSIM ${base.ssim.toFixed(4)}, consistency ${base.cons.toFixed(2)}, GMSD ${base.gmsd.toFixed(4)}`,
    );
    lines.push(
      ok.length
        ? `pick: ${ok[0].sampler} ${ok[0].kind} ${ok[0].steps} steps (${ok[0].s.psnr.toFixed(2)} dB, SSIM ${ok[0].s.ssim.toFixed(4)}, GMSD ${ok[0].s.gmsd.toFixed(4)}, ${ok[0].s.seconds.toFixed(1)} s/image)`
        : 'pick: none within the rule',
    );
    for (const c of ok.slice(1, 6))
      lines.push(
        `  also within: ${c.sampler} ${c.kind} ${c.steps} steps (${c.s.psnr.toFixed(2)} dB, SSIM ${c.s.ssim.toFixed(4)}, GMSD ${c.s.gmsd.toFixed(4)})`,
      );
  }
  return lines.join('\n');
}

await main();
