// `sr3 upscale`: images in, super-resolved PNGs out, with the bundled model by default.
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { SAMPLERS } from '../sampler.ts';
import { conditionRecipe, DEFAULT_SAMPLER, DEFAULT_STEPS, defaultSchedule, modelMultiple } from '../upscale.ts';
import { bundledModelPath, createUpscaler } from './api.ts';
import { decodeImage, imageSize, readImageBytes, type Image } from './image-io.ts';
import { openModel } from './model.ts';
import { writePng } from './png.ts';
import { progress } from './progress.ts';
import { checkOutputSize, inputLimits, parseUpscaleArgs, planOutputs } from './upscale-args.ts';

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
  -o, --out        output PNG (one input, one sample) or a folder (written as <name>_sr<scale>x[_s<k>].png;
                   inputs with one name, a/x.png and b/x.png, get x and x-2)
  --model f        an sr3-wgsl model file or a reference checkpoint (.pth)
  --steps N        model evaluations (default ${DEFAULT_STEPS}; the schedule is ${defaultSchedule(DEFAULT_STEPS)}; the ODE
                   solvers dpmpp-2m and unipc get karras:N)
  --schedule s     kind:steps:start:end, e.g. linear:100:1e-4:0.2, or logsnr|karras:steps:sigma_min:sigma_max
                   (overrides --steps)
  --sampler s      ${SAMPLERS.join(' | ')} (default ${DEFAULT_SAMPLER})
  --eta E          DDIM's eta, 0 (deterministic, the default) to 1 (DDPM-like)
  --seed n         random seed, 0 to 2^53-1 (default 0): the same seed gives the same image
  --samples k      k different samples per image, 1 to 64 (default 1)
  --no-consistency do not pin the output's low frequencies to the input
  --tile T         work on overlapping T x T output tiles sampled jointly (default: chosen for the device and the
                   model: the whole image unless it does not fit or the model's attention makes tiles much cheaper);
                   --overlap P pixels between tiles (default T/4)
  --quiet          no progress bar`;

export async function upscaleCommand(argv: string[]): Promise<number> {
  // Everything that can fail cheaply fails before the GPU work: flags, outputs, model, input sizes.
  const a = parseUpscaleArgs(argv, HELP);
  if (!a) {
    console.log(HELP);
    return 0;
  }
  const { out, samples, seed, sampler, schedule } = a;
  const files = expandInputs(a.inputs);
  const toDir = files.length > 1 || a.inputs.some(isDir) || samples > 1 || isDir(out) || out.endsWith('/');
  if (toDir) {
    if (!existsSync(out))
      throw new Error(`${out}: no such folder (create it first, or give a .png file name for a single image)`);
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
  const modelFile = a.model ?? DEFAULT_MODEL;
  if (!a.model && !existsSync(modelFile))
    throw new Error(`the bundled model ${modelFile} is missing: reinstall, or pass --model`);
  const model = await openModel(modelFile, { config: a.config });
  const { scale, m } = { ...conditionRecipe(model), m: modelMultiple(model) };
  if (a.tile !== undefined && a.tile < m)
    throw new Error(`--tile ${a.tile} is smaller than this model's multiple of ${m}; give at least ${m}`);
  const plan = planOutputs(files, { out, toDir, samples, scale });
  // the headers only: an input whose output the PNG writer would refuse is refused now, before it is even decoded
  const inputs: { file: string; targets: string[]; bytes: Uint8Array }[] = [];
  for (const job of plan.jobs) {
    const bytes = await readImageBytes(job.file);
    const { width, height } = imageSize(bytes, job.file);
    checkOutputSize(job.file, width, height, scale);
    inputs.push({ ...job, bytes });
  }
  for (const n of plan.notes) console.error(n);

  // one upscaler for every image: the device, the model's weights and the sampler of each image size are built once
  const up = await createUpscaler({
    model,
    schedule,
    sampler,
    eta: a.eta,
    samples,
    consistency: a.consistency,
    tile: a.tile,
    overlap: a.overlap,
  });
  try {
    if (!a.quiet) {
      console.error(
        `model ${basename(modelFile)} (${scale}x), ${sampler} sampler, schedule ${schedule}, seed ${seed}, on ${up.device.adapter.description}`,
      );
    }
    const t0 = performance.now();
    for (const { file, targets, bytes } of inputs) {
      const img = decodeImage(bytes, file, inputLimits(scale));
      const bar = progress(
        `${basename(file)} ${img.width}x${img.height} -> ${img.width * scale}x${img.height * scale}`,
        'steps',
        process.stderr,
        a.quiet,
      );
      bar.stage('preparing');
      let tiled = false;
      const r = await up.upscale(img, {
        seed,
        onPrepare: (d, t) => bar.stage(`preparing: compiling shaders ${d}/${t}`),
        // a tiled image reports each tile of each step; steps alone would leave a big image silent for minutes
        onTile: (d, t) => {
          tiled = true;
          bar.update(d, t, 'tile passes');
        },
        onProgress: (d, t) => {
          if (!tiled) bar.update(d, t);
        },
      });
      for (let k = 0; k < r.images.length; k++) await writePng(targets[k], r.images[k] as Image);
      bar.done(a.quiet ? undefined : `wrote ${targets.join(', ')} (${r.seconds.toFixed(1)} s)`);
    }
    const secs = (performance.now() - t0) / 1000;
    if (!a.quiet && inputs.length > 1) {
      console.error(
        `${inputs.length} images in ${secs.toFixed(1)} s (${(inputs.length / secs).toFixed(2)} images/s, one upscaler)`,
      );
    }
    return 0;
  } finally {
    up.dispose();
  }
}
