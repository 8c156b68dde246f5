// `sr3 train`: Algorithm 1 on a folder of photos, on the GPU, with checkpoints, a loss log and a loss plot.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync, appendFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { UNetConfig } from '../../weights-format/config.ts';
import {
  castFloat,
  encodeModel,
  f32Entry,
  loadModel,
  parseReferenceOptions,
  readSafetensors,
  toFloat32,
  validateConfig,
  writeSafetensors,
  type Schedule,
  type SR3Model,
} from '../../weights-format/index.ts';
import { readFileBytes, writeFileAtomic } from '../../weights-format/node.ts';
import { makeSchedule, parseSchedule } from '../schedule.ts';
import type { TrainTarget } from '../train.ts';
import { type BlurSpec, initParams, photoCrops, Trainer, type TrainerOptions } from '../trainer.ts';
import type { UNetWeights } from '../unet.ts';
import { modelObjective, modelTarget } from '../upscale.ts';
import { openDevice } from './device.ts';
import { readImage, type Image } from './image-io.ts';
import { writePng } from './png.ts';
import { plotLoss } from './plot.ts';
import { progress } from './progress.ts';

const base = { in_channel: 6, out_channel: 3, dropout: 0 };
/** Named U-Net sizes: tiny (a quick test on the software device), small (the bundled natural4x's shape), sr3 (16->128). */
export const PRESETS: Record<string, UNetConfig> = {
  tiny: { ...base, inner_channel: 16, channel_mults: [1, 2, 2], res_blocks: 1, norm_groups: 8, attn_levels: [2] },
  small: { ...base, inner_channel: 32, channel_mults: [1, 2, 4, 4], res_blocks: 2, norm_groups: 32, attn_levels: [3] },
  sr3: { ...base, inner_channel: 64, channel_mults: [1, 2, 4, 8, 8], res_blocks: 2, norm_groups: 32, attn_levels: [3] },
};

const HELP = `usage: sr3 train --data <dir> --out <model.safetensors> [options]

Trains an SR3 model (Algorithm 1 of the paper) on random crops of the PNG/JPEG photos in --data.
  --config c        tiny | small | sr3 | a reference options .json (default small)
  --scale s         upscaling factor (default 4); LR = antialiased bicubic downscale, condition = bicubic upscale
  --patch p         HR crop size (default 128; a multiple of the model's 2^(levels-1) and of the scale)
  --batch b         batch size (default 16)
  --lr x            Adam learning rate (default 1e-4); --warmup n steps of linear warm-up (default 0)
  --steps n | --minutes m   how long (default 1000 steps)
  --loss l1|l2      (default l1, sum reduction as the reference; --reduction mean for the mean)
  --objective o     diffusion (default) or regression: the paper's baseline, the same U-Net predicting the HR image
                    from the condition in one pass (MSE, l2, unless --loss says otherwise)
  --target t        hr (default: the reference's, y is the image) or residual (y is HR minus the bicubic condition,
                    as SRDiff; recorded in the model, and every sampler, consistency and sr3 eval add it back)
  --init f          start from this model's weights (any target or objective: e.g. a regression-trained warm
                    start for a diffusion model), with a fresh optimizer, at step 0
  --blur p:s0:s1    Gaussian-blur augmentation of the condition: with probability p a batch element's LR image is
                    blurred with sigma ~ U(s0, s1) (LR pixels) before the bicubic upscale (default off;
                    0.5:0.4:0.6 is Cascaded Diffusion Models' setting)
  --state-dtype d   f32 (default) | f16 | bf16: the model and state files' storage (f16: half the size)
  --moments m       keep (default) | drop: write Adam's moments into the state file or not (a resumed run without
                    them starts a fresh optimizer and uses --warmup)
  --report-every s  print steps/s and images/s every s seconds (default 30)
  --schedule s      training noise schedule kind:steps:start:end (default linear:2000:1e-6:0.01)
  --ema d           keep an EMA of the weights with decay d and save it as the model (default off)
  --clip n          clip the gradients' global L2 norm to n before each update (default off)
  --resume f        continue from a checkpoint written by this command (its .state file is read too; without one, or
                    without moments in it, the optimizer starts fresh)
  --save-every n    checkpoint every n steps (default 500)
  --seed n          (default 0)
Writes <out> (the model), <out>.state.safetensors (optimizer state, for --resume), <out>.log.jsonl (loss per step)
and <out>.loss.png (the loss curve). Ctrl-C saves a checkpoint and exits.`;

/** --blur p:s0:s1 -> the probability, the sigma range (LR pixels) and the window radius (3 sigma, at least 1). */
export function parseBlur(spec: string | undefined): BlurSpec | null {
  if (spec === undefined || spec === 'off') return null;
  const v = spec.split(':').map(Number);
  if (
    v.length !== 3 ||
    v.some((x) => !Number.isFinite(x)) ||
    !(v[0] >= 0 && v[0] <= 1) ||
    !(v[1] > 0 && v[2] >= v[1] && v[2] <= 2.5)
  ) {
    throw new Error(
      `--blur must be p:s0:s1 with p in [0, 1] and 0 < s0 <= s1 <= 2.5 (e.g. 0.5:0.4:0.6), got '${spec}'`,
    );
  }
  return { p: v[0], s0: v[1], s1: v[2], radius: Math.max(1, Math.ceil(3 * v[2])) };
}

/** `sr3 train`: the arguments, the starting weights, the photos, then the training loop on the device. */
export async function trainCommand(argv: string[]): Promise<number> {
  const args = await parseTrainArgs(argv);
  if (!args) return 0; // --help
  const start = await loadStart(args);
  const photos = await loadPhotos(args.data, args.patch);
  return runTraining(args, start, photos);
}

/** sr3 train's arguments, checked, with the target and objective a resumed checkpoint recorded. */
interface TrainArgs {
  data: string;
  /** The model file (resolved); the state, log and plot are named after it. */
  out: string;
  config: string;
  schedule: string;
  resume?: string;
  init?: string;
  /** --blur as given (recorded in the model's metadata) and parsed. */
  blurArg?: string;
  blur: BlurSpec | null;
  scale: number;
  patch: number;
  batch: number;
  lr: number;
  warmup: number;
  saveEvery: number;
  seed: number;
  maxSteps: number;
  minutes: number;
  ema: number;
  clip: number;
  reportEvery: number;
  stateDtype: 'F32' | 'F16' | 'BF16';
  moments: boolean;
  target: TrainTarget;
  objective: 'diffusion' | 'regression';
  loss: 'l1' | 'l2';
  reduction: 'sum' | 'mean';
  quiet: boolean;
}

/** The arguments, each checked with a message naming it; null after printing --help. */
async function parseTrainArgs(argv: string[]): Promise<TrainArgs | null> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      out: { type: 'string', short: 'o' },
      config: { type: 'string', default: 'small' },
      scale: { type: 'string', default: '4' },
      patch: { type: 'string', default: '128' },
      batch: { type: 'string', default: '16' },
      lr: { type: 'string', default: '1e-4' },
      warmup: { type: 'string', default: '0' },
      steps: { type: 'string' },
      minutes: { type: 'string' },
      loss: { type: 'string' },
      objective: { type: 'string' },
      reduction: { type: 'string', default: 'sum' },
      schedule: { type: 'string', default: 'linear:2000:1e-6:0.01' },
      ema: { type: 'string' },
      clip: { type: 'string' },
      resume: { type: 'string' },
      init: { type: 'string' },
      target: { type: 'string' },
      blur: { type: 'string' },
      'state-dtype': { type: 'string', default: 'f32' },
      moments: { type: 'string', default: 'keep' },
      'report-every': { type: 'string', default: '30' },
      'save-every': { type: 'string', default: '500' },
      seed: { type: 'string', default: '0' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return null;
  }
  if (!values.data) throw new Error(`--data is required\n\n${HELP}`);
  if (!values.out) throw new Error(`--out is required\n\n${HELP}`);
  const num = (k: keyof typeof values, min: number, int = true): number => {
    const v = Number(values[k]);
    if (!Number.isFinite(v) || v < min || (int && !Number.isInteger(v)))
      throw new Error(`--${String(k)} must be ${int ? 'an integer' : 'a number'} >= ${min}, got '${values[k]}'`);
    return v;
  };
  const scale = num('scale', 1);
  const patch = num('patch', 8);
  const batch = num('batch', 1);
  const lr = num('lr', 0, false);
  const warmup = num('warmup', 0);
  const saveEvery = num('save-every', 1);
  const seed = num('seed', 0);
  const maxSteps = values.steps !== undefined ? num('steps', 1) : values.minutes !== undefined ? Infinity : 1000;
  const minutes = values.minutes !== undefined ? num('minutes', 0, false) : Infinity;
  const ema = values.ema !== undefined ? num('ema', 0, false) : 0;
  const clip = values.clip !== undefined ? num('clip', 0, false) : 0;
  if (ema >= 1) throw new Error(`--ema must be below 1, got ${ema}`);
  const reportEvery = num('report-every', 0, false);
  const blur = parseBlur(values.blur);
  const dtypes: Record<string, 'F32' | 'F16' | 'BF16'> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  const stateDtype = dtypes[values['state-dtype']!];
  if (!stateDtype) throw new Error(`--state-dtype must be f32, f16 or bf16, got '${values['state-dtype']}'`);
  if (values.moments !== 'keep' && values.moments !== 'drop')
    throw new Error(`--moments must be keep or drop, got '${values.moments}'`);
  if (values.resume && values.init)
    throw new Error(
      '--resume and --init exclude each other: --resume continues a run, --init starts a new one from weights',
    );
  let savedObjective: string | undefined;
  let savedTarget: TrainTarget | undefined;
  if (values.resume) {
    try {
      const m = loadModel(await readFileBytes(values.resume));
      savedObjective = modelObjective(m);
      savedTarget = modelTarget(m);
    } catch {
      /* reported when the checkpoint is loaded (loadStart) */
    }
  }
  const target = (values.target ?? savedTarget ?? 'hr') as TrainTarget;
  if (target !== 'hr' && target !== 'residual')
    throw new Error(`--target must be hr or residual, got '${values.target}'`);
  if (savedTarget && savedTarget !== target)
    throw new Error(
      `${values.resume} was trained with --target ${savedTarget}; cannot continue it as ${target} (use --init to start a new run from its weights)`,
    );
  const objective = (values.objective ?? savedObjective ?? 'diffusion') as 'diffusion' | 'regression';
  if (objective !== 'diffusion' && objective !== 'regression')
    throw new Error(`--objective must be diffusion or regression, got '${values.objective}'`);
  if (savedObjective && savedObjective !== objective)
    throw new Error(
      `${values.resume} was trained with --objective ${savedObjective}; cannot continue it as ${objective}`,
    );
  const loss = (values.loss ?? (objective === 'regression' ? 'l2' : 'l1')) as 'l1' | 'l2';
  if (loss !== 'l1' && loss !== 'l2') throw new Error(`--loss must be l1 or l2`);
  const reduction = values.reduction as 'sum' | 'mean';
  if (reduction !== 'sum' && reduction !== 'mean') throw new Error(`--reduction must be sum or mean`);
  const out = resolve(values.out);
  if (!existsSync(dirname(out))) throw new Error(`${dirname(out)}: no such folder for the output`);
  return {
    data: values.data,
    out,
    config: values.config!,
    schedule: values.schedule!,
    resume: values.resume,
    init: values.init,
    blurArg: values.blur,
    blur,
    scale,
    patch,
    batch,
    lr,
    warmup,
    saveEvery,
    seed,
    maxSteps,
    minutes,
    ema,
    clip,
    reportEvery,
    stateDtype,
    moments: values.moments === 'keep',
    target,
    objective,
    loss,
    reduction,
    quiet: !!values.quiet,
  };
}

/** Where training starts: the model's config, schedule and weights, and with --resume the run's state. */
interface Start {
  weights: UNetWeights;
  schedule: Schedule;
  resume?: TrainerOptions['resume'];
}

/** --resume's checkpoint and state file, --init's weights, or a preset / options file with fresh weights. */
async function loadStart(a: TrainArgs): Promise<Start> {
  let start: Start;
  if (a.init) {
    const m = loadModel(await readFileBytes(a.init));
    start = { weights: m, schedule: m.schedule ?? parseSchedule(a.schedule) };
  } else if (a.resume) {
    const m = loadModel(await readFileBytes(a.resume));
    start = { weights: m, schedule: m.schedule ?? parseSchedule(a.schedule), resume: await readState(a, m) };
  } else {
    const c = a.config;
    let cfg: UNetConfig;
    if (PRESETS[c]) cfg = PRESETS[c];
    else if (existsSync(c)) {
      const parsed = parseReferenceOptions(readFileSync(c, 'utf8'), c);
      cfg = validateConfig({ ...parsed.unet, norm_groups: parsed.unet.norm_groups ?? 32 }, c);
    } else
      throw new Error(`--config: '${c}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor an options file`);
    const params = initParams(cfg, a.seed);
    start = { weights: { config: cfg, param: (n) => params.get(n)! }, schedule: parseSchedule(a.schedule) };
  }
  const f = 2 ** (start.weights.config.channel_mults.length - 1);
  if (a.patch % f || a.patch % a.scale)
    throw new Error(`--patch ${a.patch} must be a multiple of ${f} (the model's levels) and of the scale ${a.scale}`);
  makeSchedule(start.schedule); // refuses a bad schedule before the photos are read
  return start;
}

/**
 * The state file next to a resumed checkpoint (params, Adam's moments when kept, the EMA, the step counts); without
 * one, the model alone (e.g. the EMA weights a GPU slice brings back) at the step its metadata records.
 */
async function readState(a: TrainArgs, m: SR3Model): Promise<NonNullable<TrainerOptions['resume']>> {
  const sf = `${a.resume}.state.safetensors`;
  const warm = (w: string) => (a.warmup ? `${w} ${a.warmup} warm-up steps` : ' (consider --warmup)');
  if (!existsSync(sf)) {
    const recorded = Number(JSON.parse(m.metadata.training ?? '{}').steps ?? 0);
    const step = Number.isInteger(recorded) && recorded > 0 ? recorded : 0;
    console.error(`note: ${sf} not found: resuming the weights (step ${step}) with a fresh optimizer${warm(' and')}`);
    return { step };
  }
  const st = readSafetensors(await readFileBytes(sf));
  const state = new Map([...st.tensors].map(([k, t]) => [k, toFloat32(t)]));
  const step = Number(st.metadata.step ?? 0);
  let adamStep = Number(st.metadata.adam_step ?? step);
  if (!state.has('adam_m')) {
    console.error(`note: ${sf} has no optimizer moments: a fresh Adam from step ${step}${warm(' with')}`);
    adamStep = 0;
  }
  return {
    step,
    params: state.get('params'),
    adamM: state.get('adam_m'),
    adamV: state.get('adam_v'),
    ema: state.get('ema'),
    adamStep,
  };
}

/** The PNG and JPEG photos in `dir` (sorted by name), skipping with a note those smaller than the patch. */
async function loadPhotos(dir: string, patch: number): Promise<Image[]> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: no such folder of training images`);
  const files = readdirSync(dir)
    .filter((n) => /\.(png|jpe?g)$/i.test(n))
    .sort()
    .map((n) => join(dir, n));
  if (!files.length) throw new Error(`${dir}: no PNG or JPEG images`);
  const photos: Image[] = [];
  for (const file of files) {
    const img = await readImage(file);
    if (img.width < patch || img.height < patch) {
      console.error(`note: skipping ${basename(file)} (${img.width}x${img.height}, smaller than the ${patch}px patch)`);
      continue;
    }
    photos.push(img);
  }
  if (!photos.length) throw new Error(`${dir}: no image is at least ${patch}x${patch}`);
  return photos;
}

/** The device part: the Trainer's steps with the loss log, progress, reports, checkpoints and Ctrl-C. */
async function runTraining(a: TrainArgs, start: Start, photos: Image[]): Promise<number> {
  const { batch: B, patch, out } = a;
  const ctx = await openDevice();
  let stop = false;
  const onSig = () => {
    if (stop) process.exit(130);
    stop = true;
    console.error('\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSig);
  try {
    const trainer = await Trainer.create(ctx, start.weights, {
      batch: B,
      patch,
      scale: a.scale,
      schedule: start.schedule,
      lr: a.lr,
      warmup: a.warmup,
      loss: a.loss,
      reduction: a.reduction,
      objective: a.objective,
      target: a.target,
      blur: a.blur,
      ema: a.ema,
      clip: a.clip,
      seed: a.seed,
      crops: photoCrops(photos, patch),
      resume: start.resume,
    });
    const save = async (why: string) => {
      const step = await writeCheckpoint(a, start, photos.length, trainer);
      if (!a.quiet) console.error(`${why}: saved ${out} at step ${step}`);
    };
    const logFile = `${out}.log.jsonl`;
    if (!a.resume) writeFileSync(logFile, '');
    const history: { step: number; loss: number }[] = [];
    const total = Number.isFinite(a.maxSteps) ? a.maxSteps : 0;
    const bar = progress('train', 'steps', process.stderr, a.quiet);
    const t0 = performance.now();
    const deadline = t0 + a.minutes * 60_000;
    let step = 0;
    // throughput is timed from the end of the first step (which compiles the pipelines)
    let tFirst = t0;
    let tReport = t0;
    while (step < a.maxSteps && performance.now() < deadline && !stop) {
      const { loss, lr } = await trainer.step();
      if (!Number.isFinite(loss))
        throw new Error(
          `the loss became ${loss} at step ${trainer.stepsDone}: lower --lr (now ${a.lr}) or add --warmup`,
        );
      step++;
      history.push({ step: trainer.stepsDone, loss });
      const seconds = +((performance.now() - t0) / 1000).toFixed(3);
      appendFileSync(logFile, JSON.stringify({ step: trainer.stepsDone, loss, lr, seconds }) + '\n');
      bar.update(step, total || step);
      if (step === 1) tFirst = performance.now();
      const now = performance.now();
      if (a.reportEvery > 0 && now - tReport >= a.reportEvery * 1000 && step > 1) {
        const r = (step - 1) / ((now - tFirst) / 1000);
        console.error(
          `step ${trainer.stepsDone}: loss ${loss.toFixed(3)}, ${r.toFixed(3)} steps/s, ${(r * B).toFixed(2)} images/s (${patch}px, batch ${B})`,
        );
        tReport = now;
      }
      if (step % a.saveEvery === 0) await save('checkpoint');
    }
    bar.done();
    await save(stop ? 'interrupted' : 'done');
    await writePng(`${out}.loss.png`, plotLoss(history));
    const tEnd = performance.now();
    const rate = step > 1 ? (step - 1) / ((tEnd - tFirst) / 1000) : NaN;
    console.error(summary(a, history, (tEnd - t0) / 1000, rate, ctx.adapter.description));
    trainer.destroy();
    return stop ? 130 : 0;
  } finally {
    process.off('SIGINT', onSig);
    ctx.destroy();
  }
}

/** Write the model (the EMA weights with --ema) and the state file, each atomically; returns the step saved. */
async function writeCheckpoint(a: TrainArgs, start: Start, images: number, trainer: Trainer): Promise<number> {
  const params = await trainer.modelParams();
  const st = await trainer.state({ moments: a.moments });
  const condition = { scale: a.scale, resample: 'bicubic', bicubic_a: -0.75, clamp: true };
  const extra = {
    objective: a.objective,
    target: a.target,
    steps: st.step,
    batch: a.batch,
    patch: a.patch,
    lr: a.lr,
    loss: a.loss,
    reduction: a.reduction,
    ema: a.ema,
    clip: a.clip,
    blur: a.blurArg ?? null,
    init: a.init ? basename(a.init) : undefined,
    data: basename(resolve(a.data)),
    images,
  };
  const { config } = start.weights;
  const { schedule } = start;
  await writeFileAtomic(
    a.out,
    encodeModel(config, (n) => params.get(n)!, { schedule, condition, extra, dtype: a.stateDtype }),
  );
  const entry = (data: Float32Array) => castFloat(f32Entry([data.length], data), a.stateDtype, 'state');
  const tensors: [string, ReturnType<typeof f32Entry>][] = [['params', entry(st.params)]];
  if (st.adamM && st.adamV) tensors.push(['adam_m', entry(st.adamM)], ['adam_v', entry(st.adamV)]);
  if (st.ema) tensors.push(['ema', entry(st.ema)]);
  await writeFileAtomic(
    `${a.out}.state.safetensors`,
    writeSafetensors(tensors, { step: String(st.step), adam_step: String(st.adamStep) }),
  );
  return st.step;
}

/** The closing line: steps, time, throughput after the first step, and the loss at the start and the end. */
function summary(a: TrainArgs, history: { loss: number }[], secs: number, rate: number, device: string): string {
  const mean = (h: { loss: number }[]) => h.reduce((s, p) => s + p.loss, 0) / Math.max(1, h.length);
  const tenth = Math.max(1, Math.floor(history.length / 10));
  const tail = history.slice(-tenth); // no steps: NaN, as the first and last losses
  const first = history.length ? history[0].loss : NaN;
  const last = history.length ? history[history.length - 1].loss : NaN;
  return (
    `trained ${history.length} steps in ${secs.toFixed(1)} s (after the first: ${rate.toFixed(3)} steps/s, ${(rate * a.batch).toFixed(2)} images/s, ` +
    `${(1000 / rate).toFixed(0)} ms/step; batch ${a.batch}, ${a.patch}px) on ${device}; ` +
    `loss first ${first.toFixed(2)}, last ${last.toFixed(2)}; mean of the first 10%: ${mean(history.slice(0, tenth)).toFixed(2)}, ` +
    `last 10%: ${(tail.reduce((s, p) => s + p.loss, 0) / tail.length).toFixed(2)}`
  );
}
