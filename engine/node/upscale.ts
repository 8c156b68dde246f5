// `sr3 upscale`: images in, super-resolved PNGs out, with the bundled model by default.
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SAMPLERS, type SamplerKind } from '../sampler.ts';
import { DEFAULT_STEPS, defaultSchedule } from '../upscale.ts';
import { bundledModelPath, createUpscaler } from './api.ts';
import { readImage, type Image } from './image-io.ts';
import { openModel } from './model.ts';
import { writePng } from './png.ts';
import { progress } from './progress.ts';

export const DEFAULT_MODEL = bundledModelPath();

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** The input list with each folder replaced by its PNG and JPEG files (not recursive, sorted by name). */
export function expandInputs(inputs: string[]): string[] {
  const files: string[] = [];
  for (const p of inputs) {
    if (!isDir(p)) {
      files.push(p);
      continue;
    }
    const inside = readdirSync(p)
      .filter((f) => IMAGE_EXT.has(extname(f).toLowerCase()))
      .sort()
      .map((f) => join(p, f));
    if (inside.length === 0) throw new Error(`${p}: a folder with no .png, .jpg or .jpeg files`);
    files.push(...inside);
  }
  return files;
}

const HELP = `usage: sr3 upscale <in.png|jpg | folder> [more...] -o <out.png | dir> [options]

Super-resolves images with an SR3 model (default: the bundled 4x model, models/natural4x.safetensors). A folder
stands for its PNG and JPEG files; several images run through one upscaler (the model and its GPU pipelines are
built once) and end with a summary line (images, seconds, images/s).
  -o, --out        output PNG (one input, one sample) or a folder (written as <name>_sr<scale>x[_s<k>].png)
  --model f        an sr3-wgsl model file or a reference checkpoint (.pth)
  --steps N        sampling steps (default ${DEFAULT_STEPS}; the schedule is ${defaultSchedule(DEFAULT_STEPS)})
  --schedule s     kind:steps:start:end, e.g. linear:100:1e-4:0.2 (overrides --steps)
  --sampler s      ${SAMPLERS.join(' | ')} (default reference)
  --eta E          DDIM's eta (default 0)
  --seed n         random seed (default 0): the same seed gives the same image
  --samples k      k different samples per image (default 1)
  --no-consistency do not pin the output's low frequencies to the input
  --tile T         work on overlapping T x T output tiles sampled jointly (default: only when the image does not
                   fit the device); --overlap P pixels between tiles (default T/4)
  --quiet          no progress bar`;

export async function upscaleCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      model: { type: 'string' },
      config: { type: 'string' },
      steps: { type: 'string' },
      schedule: { type: 'string' },
      sampler: { type: 'string', default: 'reference' },
      eta: { type: 'string' },
      seed: { type: 'string', default: '0' },
      samples: { type: 'string', default: '1' },
      'no-consistency': { type: 'boolean' },
      tile: { type: 'string' },
      overlap: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length === 0) throw new Error(`no input image\n\n${HELP}`);
  if (!values.out) throw new Error(`-o/--out is required\n\n${HELP}`);
  const int = (v: string | undefined, name: string, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const steps = int(values.steps, 'steps', 2);
  const samples = int(values.samples, 'samples', 1)!;
  const seed = int(values.seed, 'seed', 0)!;
  const tile = int(values.tile, 'tile', 8);
  const overlap = int(values.overlap, 'overlap', 0);
  const sampler = values.sampler as SamplerKind;
  if (!SAMPLERS.includes(sampler)) throw new Error(`--sampler must be one of ${SAMPLERS.join(', ')}, got '${values.sampler}'`);
  const eta = values.eta === undefined ? undefined : Number(values.eta);
  if (eta !== undefined && !(eta >= 0)) throw new Error(`--eta must be a number >= 0, got '${values.eta}'`);
  const schedule = values.schedule ?? defaultSchedule(steps ?? DEFAULT_STEPS);

  // Everything that can fail cheaply fails before the GPU work: inputs, outputs, model.
  const files = expandInputs(positionals);
  const out = values.out;
  const toDir = files.length > 1 || positionals.some(isDir) || samples > 1 || isDir(out) || out.endsWith('/');
  if (toDir) {
    if (!existsSync(out)) throw new Error(`${out}: no such folder (create it first, or give a .png file name for a single image)`);
    if (!statSync(out).isDirectory()) throw new Error(`${out}: not a folder; several outputs need a folder`);
  } else if (extname(out).toLowerCase() !== '.png') {
    throw new Error(`${out}: the output is written as PNG; give a file name ending in .png or a folder`);
  }
  const outDir = toDir ? out : dirname(resolve(out));
  try {
    accessSync(outDir, constants.W_OK);
  } catch {
    throw new Error(`${outDir}: cannot write there (missing folder or no permission)`);
  }
  // every input is decoded once here, so a bad file stops the run before any GPU work; each is read again when its
  // turn comes, so a large folder is not held in memory
  const sizes = new Map<string, { width: number; height: number }>();
  for (const file of files) {
    const { width, height } = await readImage(file);
    sizes.set(file, { width, height });
  }
  const modelFile = values.model ?? DEFAULT_MODEL;
  if (!values.model && !existsSync(modelFile)) throw new Error(`the bundled model ${modelFile} is missing: reinstall, or pass --model`);
  const model = await openModel(modelFile, { config: values.config });

  // one upscaler for every image: the device, the model's weights and the sampler of each image size are built once
  const up = await createUpscaler({
    model, schedule, sampler, eta, samples, consistency: !values['no-consistency'], tile, overlap,
  });
  const { scale } = up;
  try {
    if (!values.quiet) {
      console.error(`model ${basename(modelFile)} (${scale}x), ${sampler} sampler, schedule ${schedule}, seed ${seed}, on ${up.device.adapter.description}`);
    }
    const t0 = performance.now();
    for (const file of files) {
      const size = sizes.get(file)!;
      const bar = progress(`${basename(file)} ${size.width}x${size.height} -> ${size.width * scale}x${size.height * scale}`, 'steps', process.stderr, !!values.quiet);
      const r = await up.upscale(file, { seed, onProgress: (d, t) => bar.update(d, t) });
      const written: string[] = [];
      for (let k = 0; k < r.images.length; k++) {
        const target = toDir
          ? join(out, `${basename(file, extname(file))}_sr${scale}x${samples > 1 ? `_s${k}` : ''}.png`)
          : out;
        await writePng(target, r.images[k] as Image);
        written.push(target);
      }
      bar.done(values.quiet ? undefined : `wrote ${written.join(', ')} (${r.seconds.toFixed(1)} s)`);
    }
    const secs = (performance.now() - t0) / 1000;
    if (!values.quiet && files.length > 1) {
      console.error(`${files.length} images in ${secs.toFixed(1)} s (${(files.length / secs).toFixed(2)} images/s, one upscaler)`);
    }
    return 0;
  } finally {
    up.dispose();
  }
}
