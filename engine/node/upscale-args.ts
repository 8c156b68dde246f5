// `sr3 upscale`'s checks that need no model and no device: every flag's number for range and finiteness, the output
// names (never two inputs onto one file, never over an input), and the sizes an input may have so that its output
// can be written. All pure (no file system, no GPU), so they are tested directly and run before any long work.
import { basename, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SAMPLERS, type SamplerKind } from '../sampler.ts';
import { MAX_STEPS, parseSchedule } from '../schedule.ts';
import { DEFAULT_SAMPLER, DEFAULT_STEPS, defaultSchedule } from '../upscale.ts';
import { MAX_SAMPLES, MAX_TILE } from '../upscaler.ts';
import { MAX_PNG_PIXELS, MAX_PNG_SIDE } from './png.ts';

export { MAX_SAMPLES, MAX_TILE } from '../upscaler.ts';

export interface UpscaleArgs {
  inputs: string[];
  out: string;
  model?: string;
  config?: string;
  /** kind:steps:start:end, parsed and checked */
  schedule: string;
  sampler: SamplerKind;
  eta?: number;
  seed: number;
  samples: number;
  consistency: boolean;
  tile?: number;
  overlap?: number;
  quiet: boolean;
}

/**
 * An integer flag from its text: refused (quoting the text as given, so '1e400' or a 20-digit seed is shown as typed,
 * not rounded) unless it is an integer from min to max.
 */
export function integerArg(text: string, name: string, min: number, max: number, prefix = '--'): number {
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${prefix}${name} must be an integer from ${min} to ${max}, got '${text}'`);
  }
  return n;
}

/** DDIM's eta from its text: only with the DDIM sampler, finite, from 0 to 1. */
export function etaArg(text: string, sampler: SamplerKind, prefix = '--'): number {
  if (sampler !== 'ddim')
    throw new Error(`${prefix}eta is DDIM's: it needs ${prefix}sampler ddim (the ${sampler} sampler has no eta)`);
  const eta = Number(text.trim());
  // 0 is deterministic DDIM, 1 DDPM-like; above 1 the added noise outgrows what the step removes
  if (text.trim() === '' || !Number.isFinite(eta) || eta < 0 || eta > 1) {
    throw new Error(`${prefix}eta must be a number from 0 (deterministic) to 1 (DDPM-like), got '${text}'`);
  }
  return eta;
}

/** The sampler's name, checked. */
export function samplerArg(text: string, prefix = '--'): SamplerKind {
  if (!SAMPLERS.includes(text as SamplerKind))
    throw new Error(`${prefix}sampler must be one of ${SAMPLERS.join(', ')}, got '${text}'`);
  return text as SamplerKind;
}

/** The schedule for `steps` (or the one given), parsed and checked. */
export function scheduleArg(given: string | undefined, steps: number, sampler: SamplerKind, prefix = '--'): string {
  const schedule = given ?? defaultSchedule(steps, sampler);
  try {
    if (parseSchedule(schedule).n_timestep < 2) throw new Error('a sampler needs at least 2 steps');
  } catch (e) {
    throw new Error(`${prefix}schedule '${schedule}': ${(e as Error).message.replace(/^schedule: /, '')}`);
  }
  return schedule;
}

/**
 * The sampling options of a queued job (JSON values, not flag texts), checked with the same rules and messages as
 * `sr3 upscale`'s flags, so a job that would sample to garbage (eta Infinity, a seed past 2^53, 1e9 steps, a bad
 * schedule) is refused before the worker spends anything on it.
 */
export function jobSampling(d: {
  steps?: unknown;
  schedule?: unknown;
  sampler?: unknown;
  eta?: unknown;
  seed?: unknown;
}): { schedule: string; sampler: SamplerKind; eta?: number; seed: number } {
  const text = (v: unknown, name: string): string => {
    if (typeof v === 'number') return String(v);
    if (typeof v === 'string') return v;
    throw new Error(`${name} must be given as a number or a string, got ${typeof v}`);
  };
  const sampler = samplerArg(d.sampler === undefined ? DEFAULT_SAMPLER : text(d.sampler, 'sampler'), '');
  const steps = d.steps === undefined ? DEFAULT_STEPS : integerArg(text(d.steps, 'steps'), 'steps', 2, MAX_STEPS, '');
  const schedule = scheduleArg(d.schedule === undefined ? undefined : text(d.schedule, 'schedule'), steps, sampler, '');
  const seed = d.seed === undefined ? 0 : integerArg(text(d.seed, 'seed'), 'seed', 0, Number.MAX_SAFE_INTEGER, '');
  const eta = d.eta === undefined ? undefined : etaArg(text(d.eta, 'eta'), sampler, '');
  return { schedule, sampler, eta, seed };
}

/**
 * Parse and check `sr3 upscale`'s arguments. Throws an Error naming the flag, the value as typed and the range;
 * `help` is appended where the usage is the fix. Returns undefined for --help.
 */
export function parseUpscaleArgs(argv: string[], help = ''): UpscaleArgs | undefined {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      model: { type: 'string' },
      config: { type: 'string' },
      steps: { type: 'string' },
      schedule: { type: 'string' },
      sampler: { type: 'string', default: DEFAULT_SAMPLER },
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
  if (values.help) return undefined;
  const usage = help ? `\n\n${help}` : '';
  if (positionals.length === 0) throw new Error(`no input image${usage}`);
  if (!values.out) throw new Error(`-o/--out is required${usage}`);
  const sampler = samplerArg(values.sampler!);
  const steps = values.steps === undefined ? DEFAULT_STEPS : integerArg(values.steps, 'steps', 2, MAX_STEPS);
  const schedule = scheduleArg(values.schedule, steps, sampler);
  const eta = values.eta === undefined ? undefined : etaArg(values.eta, sampler);
  const seed = integerArg(values.seed!, 'seed', 0, Number.MAX_SAFE_INTEGER);
  const samples = integerArg(values.samples!, 'samples', 1, MAX_SAMPLES);
  const tile = values.tile === undefined ? undefined : integerArg(values.tile, 'tile', 8, MAX_TILE);
  const overlap = values.overlap === undefined ? undefined : integerArg(values.overlap, 'overlap', 0, MAX_TILE - 1);
  if (tile !== undefined && overlap !== undefined && overlap >= tile) {
    throw new Error(`--overlap ${overlap} must be smaller than --tile ${tile}`);
  }
  return {
    inputs: positionals,
    out: values.out,
    model: values.model,
    config: values.config,
    schedule,
    sampler,
    eta,
    seed,
    samples,
    consistency: !values['no-consistency'],
    tile,
    overlap,
    quiet: !!values.quiet,
  };
}

/** The largest input whose `scale`x output the PNG writer takes: for refusing an input by its header, before decoding. */
export function inputLimits(scale: number): { maxSide: number; maxPixels: number } {
  return { maxSide: Math.floor(MAX_PNG_SIDE / scale), maxPixels: Math.floor(MAX_PNG_PIXELS / (scale * scale)) };
}

/** Refuse an input whose output would be over the PNG writer's limits (before any sampling). */
export function checkOutputSize(name: string, width: number, height: number, scale: number): void {
  const [W, H] = [width * scale, height * scale];
  const { maxSide, maxPixels } = inputLimits(scale);
  if (W > MAX_PNG_SIDE || H > MAX_PNG_SIDE || W * H > MAX_PNG_PIXELS) {
    throw new Error(
      `${name}: ${width}x${height} would upscale to ${W}x${H}, over the ${MAX_PNG_SIDE} pixels a side and ` +
        `${MAX_PNG_PIXELS} pixels a PNG output may have; at ${scale}x an input may be up to ${maxSide} pixels a side and ` +
        `${maxPixels} pixels: crop or split it first`,
    );
  }
}

export interface OutputPlan {
  /** one entry per distinct input, in order: the files its samples go to */
  jobs: { file: string; targets: string[] }[];
  /** what the user must be told: duplicates dropped, names changed */
  notes: string[];
}

/**
 * Where each input's output goes. To a folder: `<name>_sr<scale>x[_s<k>].png`; two inputs with one name (a/x.png and
 * b/x.jpg) get distinct names (`x`, `x-2`, ...) and a note says so; a file listed twice is upscaled once. Refuses any
 * target that is one of the inputs.
 */
export function planOutputs(
  inputs: string[],
  o: { out: string; toDir: boolean; samples: number; scale: number },
): OutputPlan {
  const notes: string[] = [];
  const seen = new Map<string, string>();
  const files: string[] = [];
  for (const f of inputs) {
    const r = resolve(f);
    if (seen.has(r)) {
      notes.push(`note: ${f} is listed more than once; it is upscaled once`);
      continue;
    }
    seen.set(r, f);
    files.push(f);
  }
  const stem = (f: string) => basename(f, extname(f));
  // names compare case-insensitively: on macOS and Windows X.png and x.png are one file
  const key = (s: string) => s.toLowerCase();
  const taken = new Set<string>();
  const stems = new Set(files.map((f) => key(stem(f))));
  const jobs = files.map((file) => {
    if (!o.toDir) return { file, targets: [o.out] };
    let name = stem(file);
    if (taken.has(key(name))) {
      let k = 2;
      while (taken.has(key(`${name}-${k}`)) || stems.has(key(`${name}-${k}`))) k++;
      const first = files.find((f) => key(stem(f)) === key(name));
      name = `${name}-${k}`;
      notes.push(
        `note: ${first} and ${file} have the same name; ${file}'s output is named ${name}_sr${o.scale}x${o.samples > 1 ? '_s<k>' : ''}.png`,
      );
    }
    taken.add(key(name));
    const targets = Array.from({ length: o.samples }, (_, k) =>
      join(o.out, `${name}_sr${o.scale}x${o.samples > 1 ? `_s${k}` : ''}.png`),
    );
    return { file, targets };
  });
  for (const { targets } of jobs) {
    for (const t of targets) {
      const input = seen.get(resolve(t));
      if (input !== undefined)
        throw new Error(`${t}: this output would overwrite the input ${input}; choose another -o`);
    }
  }
  return { jobs, notes };
}
