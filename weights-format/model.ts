// The sr3-wgsl model file: a safetensors file of the U-Net's parameters (reference names without "denoise_fn.") with
// __metadata__ describing the model (see FORMAT.md). Conversion from a reference state_dict, and loading with checks.
// Pure TypeScript: no Node imports.

import { type UNetConfig, validateConfig } from './config.ts';
import { isFloatDType } from './dtypes.ts';
import { type ConditionSpec, parseReferenceOptions, validateCondition } from './options.ts';
import { readPth, readPthAsync } from './pth.ts';
import {
  readSafetensors,
  writeSafetensors,
  toFloat32,
  castFloat,
  shapeNumel,
  nonFinite,
  type TensorEntry,
} from './safetensors.ts';
import { type Schedule, detectSchedule, validateSchedule } from './schedule.ts';
import { expectedParamShapes, diffParams, inferConfig, summarizeProblems } from './unet.ts';
import { isZip, type InflateRaw, type InflateRawSync } from './zip.ts';

export const FORMAT_NAME = 'sr3-wgsl';
export const FORMAT_VERSION = 1;

/** The buffers GaussianDiffusion registers besides the U-Net (recomputed by the engine from the schedule). */
export const SCHEDULE_BUFFERS = [
  'betas',
  'alphas_cumprod',
  'alphas_cumprod_prev',
  'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod',
  'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod',
  'posterior_variance',
  'posterior_log_variance_clipped',
  'posterior_mean_coef1',
  'posterior_mean_coef2',
];

export type { Schedule } from './schedule.ts';
export type { ConditionSpec } from './options.ts';

export interface SR3Model {
  config: UNetConfig;
  schedule?: Schedule;
  condition?: ConditionSpec;
  /** U-Net parameters by reference name without "denoise_fn.", in the reference's order. */
  tensors: Map<string, TensorEntry>;
  /** The file's raw __metadata__. */
  metadata: Record<string, string>;
  /** The parameters' storage dtype ("F32", "F16" or "BF16"; "mixed" if they differ). */
  dtype: string;
  /** Float32 copy of a U-Net parameter (cached); throws naming the tensor when the model has no such parameter. */
  param(name: string): Float32Array<ArrayBuffer>;
}

function parseJsonField(meta: Record<string, string>, key: string): unknown {
  const s = meta[key];
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s);
  } catch (e) {
    throw new Error(`model file: __metadata__.${key} is not valid JSON (${(e as Error).message})`);
  }
}

function makeModel(
  config: UNetConfig,
  tensors: Map<string, TensorEntry>,
  metadata: Record<string, string>,
  schedule?: Schedule,
  condition?: ConditionSpec,
): SR3Model {
  const cache = new Map<string, Float32Array<ArrayBuffer>>();
  const dtypes = new Set([...tensors.values()].map((t) => t.dtype));
  const model: SR3Model = {
    config,
    tensors,
    metadata,
    dtype: dtypes.size === 1 ? [...dtypes][0] : 'mixed',
    param(name: string): Float32Array<ArrayBuffer> {
      let v = cache.get(name);
      if (v) return v;
      const t = tensors.get(name);
      if (!t) {
        throw new Error(
          `model: no U-Net parameter named ${JSON.stringify(name)} (names are the reference's without "denoise_fn.", e.g. "downs.0.weight")`,
        );
      }
      v = toFloat32(t);
      cache.set(name, v);
      return v;
    },
  };
  if (schedule) model.schedule = schedule;
  if (condition) model.condition = condition;
  return model;
}

/**
 * Load and validate an sr3-wgsl model file: the safetensors container, the format name and version, the config, and
 * that the tensors are exactly the config's U-Net parameters with the right shapes and a float dtype.
 */
export function loadModel(bytes: Uint8Array): SR3Model {
  const { metadata, tensors } = readSafetensors(bytes);
  const fmt = metadata['format'];
  if (fmt !== FORMAT_NAME) {
    const looksRef = [...tensors.keys()].some((k) => k.startsWith('denoise_fn.'));
    throw new Error(
      `not an ${FORMAT_NAME} model file (__metadata__.format is ${JSON.stringify(fmt ?? null)})` +
        (looksRef
          ? '; it looks like a reference state_dict saved as safetensors: convert it with `sr3 convert <file> -o model.safetensors`'
          : '; convert reference checkpoints with `sr3 convert <in.pth> -o model.safetensors`'),
    );
  }
  const ver = metadata['format_version'];
  if (ver === undefined || !/^[0-9]+$/.test(ver))
    throw new Error(`model file: format_version ${JSON.stringify(ver ?? null)} is not an integer`);
  if (Number(ver) > FORMAT_VERSION) {
    throw new Error(
      `model file: format version ${ver} is newer than this sr3-wgsl reads (${FORMAT_VERSION}); upgrade sr3-wgsl`,
    );
  }
  if (Number(ver) < 1) throw new Error(`model file: format version ${ver} does not exist`);
  const config = validateConfig(parseJsonField(metadata, 'config'), 'model file config');
  const sch = parseJsonField(metadata, 'schedule');
  const schedule = sch === undefined ? undefined : validateSchedule(sch, 'model file schedule');
  const cond = parseJsonField(metadata, 'condition');
  const condition = cond === undefined ? undefined : validateCondition(cond, 'model file condition');
  for (const [name, t] of tensors) {
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') {
      throw new Error(`model file: tensor ${name} is ${t.dtype}; parameters must be F32, F16 or BF16`);
    }
    refuseNonFinite('model file: tensor', name, t);
  }
  const problems = diffParams(config, new Map([...tensors].map(([k, t]) => [k, t.shape])));
  if (problems.length > 0)
    throw new Error(`model file: the tensors do not match its config: ${summarizeProblems(problems)}`);
  const ordered = new Map<string, TensorEntry>();
  for (const name of expectedParamShapes(config).keys()) ordered.set(name, tensors.get(name)!);
  return makeModel(config, ordered, metadata, schedule, condition);
}

/** A model whose weights hold NaN or infinity samples to a black image: refuse it when it loads, naming the tensor. */
function refuseNonFinite(what: string, name: string, t: TensorEntry): void {
  const bad = nonFinite(t);
  if (!bad) return;
  throw new Error(
    `${what} ${name} holds ${bad.count} non-finite value${bad.count > 1 ? 's' : ''} (element ${bad.index} is ${bad.value}): ` +
      'the weights are damaged, or the training that made them diverged; this model cannot make an image',
  );
}

export interface ConvertOptions {
  /** Text of the reference's JSON options file (may have // comments). */
  optionsText?: string;
  /** GroupNorm group count (flag); must agree with the options file when both are given. Default 32. */
  normGroups?: number;
  /** Storage dtype of the output. Default F32 (exact). */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Overrides of the condition description (e.g. from --scale). */
  condition?: ConditionSpec;
  /** Free-form facts about the source file stored in __metadata__.source (file name, sha256, ...). */
  source?: Record<string, string | number>;
}

export interface ConvertResult {
  bytes: Uint8Array;
  model: SR3Model;
  /** Things the user should know (options file disagreeing with the buffers, ignored keys...). */
  warnings: string[];
}

/**
 * Turn a reference state_dict (GaussianDiffusion: "denoise_fn.<param>" + schedule buffers, or a bare U-Net's) into an
 * sr3-wgsl model file. The config comes from the options file when given (and must match the tensors) or is inferred
 * from the shapes; the schedule is recovered from the `betas` buffer.
 */
export function convertStateDict(sd: Map<string, TensorEntry>, opts: ConvertOptions = {}): ConvertResult {
  const warnings: string[] = [];
  let keys = [...sd.keys()];
  const strip = (k: string) => (k.startsWith('module.') && keys.every((x) => x.startsWith('module.')) ? k.slice(7) : k);
  const entries = [...sd].map(([k, t]) => [strip(k), t] as [string, TensorEntry]);
  keys = entries.map(([k]) => k);
  const wrapped = keys.some((k) => k.startsWith('denoise_fn.'));
  const unet = new Map<string, TensorEntry>();
  const buffers = new Map<string, TensorEntry>();
  const unknown: string[] = [];
  for (const [k, t] of entries) {
    if (wrapped && k.startsWith('denoise_fn.')) unet.set(k.slice('denoise_fn.'.length), t);
    else if (SCHEDULE_BUFFERS.includes(k)) buffers.set(k, t);
    else if (wrapped) unknown.push(k);
    else unet.set(k, t);
  }
  if (unknown.length > 0) {
    throw new Error(
      `checkpoint has keys that are neither U-Net parameters (denoise_fn.*) nor schedule buffers: ${unknown.slice(0, 5).join(', ')}` +
        `${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}; is this a reference SR3 *_gen.pth?`,
    );
  }
  for (const [k, t] of unet) {
    if (!isFloatDType(t.dtype))
      throw new Error(`checkpoint tensor ${k} is ${t.dtype}; U-Net parameters must be floating point`);
    refuseNonFinite('checkpoint tensor', k, t);
  }
  const parsed = opts.optionsText !== undefined ? parseReferenceOptions(opts.optionsText) : undefined;
  if (opts.normGroups !== undefined && (!Number.isSafeInteger(opts.normGroups) || opts.normGroups < 1)) {
    throw new Error(`--norm-groups must be a positive integer, got ${opts.normGroups}`);
  }
  if (
    opts.normGroups !== undefined &&
    parsed?.unet.norm_groups !== undefined &&
    parsed.unet.norm_groups !== opts.normGroups
  ) {
    throw new Error(
      `--norm-groups ${opts.normGroups} contradicts norm_groups ${parsed.unet.norm_groups} in the options file; drop one of them`,
    );
  }
  const normGroups = opts.normGroups ?? parsed?.unet.norm_groups ?? 32;
  const shapes = new Map([...unet].map(([k, t]) => [k, t.shape]));
  const groupsLabel =
    opts.normGroups !== undefined
      ? '--norm-groups'
      : parsed?.unet.norm_groups !== undefined
        ? 'options file'
        : 'default group count (neither --norm-groups nor an options file gave one)';
  let config: UNetConfig;
  if (parsed) {
    config = validateConfig({ ...parsed.unet, norm_groups: normGroups }, 'options file', groupsLabel);
    const problems = diffParams(config, shapes);
    if (problems.length > 0) {
      throw new Error(`the options file does not describe this checkpoint's U-Net: ${summarizeProblems(problems)}`);
    }
  } else {
    config = inferConfig(shapes, normGroups, 0, groupsLabel);
  }

  let schedule: Schedule | undefined = parsed?.schedule;
  const betas = buffers.get('betas');
  if (betas) {
    if (!isFloatDType(betas.dtype) || betas.shape.length !== 1)
      throw new Error('checkpoint: the betas buffer is not a 1-D float tensor');
    const det = detectSchedule(toFloat32(betas), parsed?.schedule);
    if (parsed?.schedule && !det.matchedHint) {
      warnings.push(
        `the options file's training schedule (${parsed.schedule.schedule}, ${parsed.schedule.n_timestep} steps) does not reproduce the checkpoint's betas buffer; using the buffer (${det.schedule.schedule})`,
      );
    }
    schedule = det.schedule;
  }
  let condition: ConditionSpec | undefined = parsed?.condition;
  if (opts.condition && Object.keys(opts.condition).length > 0) condition = { ...(condition ?? {}), ...opts.condition };
  if (condition) condition = validateCondition(condition);

  const dtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`dtype must be F32, F16 or BF16, got ${dtype}`);
  const out = new Map<string, TensorEntry>();
  for (const name of expectedParamShapes(config).keys())
    out.set(name, castFloat(unet.get(name)!, dtype, `tensor ${name}`));
  const metadata: Record<string, string> = {
    format: FORMAT_NAME,
    format_version: String(FORMAT_VERSION),
    config: JSON.stringify(config),
  };
  if (schedule) metadata.schedule = JSON.stringify(schedule);
  if (condition) metadata.condition = JSON.stringify(condition);
  if (opts.source) metadata.source = JSON.stringify(opts.source);
  const bytes = writeSafetensors(out, metadata);
  return { bytes, model: loadModel(bytes), warnings };
}

/** What kind of file these bytes are. */
export function sniffFormat(bytes: Uint8Array): 'pth' | 'safetensors' | 'unknown' {
  if (isZip(bytes)) return 'pth';
  if (bytes.length >= 10) {
    const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
    // a plausible header length and a JSON object after it (a truncated safetensors file still counts, so that
    // its reader reports the truncation)
    if (n >= 2n && n <= 100n * 1024n * 1024n && bytes[8] === 0x7b) return 'safetensors';
  }
  return 'unknown';
}

/**
 * Convert a reference checkpoint (zip .pth, or a state_dict saved as safetensors) to model-file bytes.
 * Any other input (legacy .pth included) is refused with an Error saying why.
 */
export function convertCheckpoint(
  bytes: Uint8Array,
  opts: ConvertOptions & { inflate?: InflateRawSync } = {},
): ConvertResult {
  const kind = sniffFormat(bytes);
  const sd =
    kind === 'safetensors' ? readSafetensors(bytes).tensors : readPth(bytes, { inflate: opts.inflate }).tensors;
  return convertStateDict(sd, opts);
}

/**
 * Open any model file the engine reads, the same way for every command: an sr3-wgsl model file, or a reference
 * checkpoint (zip .pth, or a state_dict saved as safetensors) converted in memory (`converted` is then true). A legacy
 * torch.save file or anything else is refused with the reason and the fix.
 */
export function openModelBytes(
  bytes: Uint8Array,
  opts: ConvertOptions & { inflate?: InflateRawSync } = {},
): { model: SR3Model; converted: boolean; warnings: string[] } {
  if (sniffFormat(bytes) === 'safetensors') {
    try {
      return { model: loadModel(bytes), converted: false, warnings: [] };
    } catch (e) {
      // a reference state_dict saved as safetensors converts; any other problem is the file's
      if (!/not an sr3-wgsl model file/.test((e as Error).message)) throw e;
    }
  }
  const r = convertCheckpoint(bytes, opts);
  return { model: r.model, converted: true, warnings: r.warnings };
}

/** As convertCheckpoint, with an async inflate (browsers). */
export async function convertCheckpointAsync(
  bytes: Uint8Array,
  opts: ConvertOptions & { inflate?: InflateRaw } = {},
): Promise<ConvertResult> {
  const kind = sniffFormat(bytes);
  const sd =
    kind === 'safetensors'
      ? readSafetensors(bytes).tensors
      : (await readPthAsync(bytes, { inflate: opts.inflate })).tensors;
  return convertStateDict(sd, opts);
}

export interface ModelSummary {
  /** e.g. "sr3-wgsl v1" */
  format: string;
  file_bytes?: number;
  dtype: string;
  parameters: number;
  tensors: number;
  config: UNetConfig;
  levels: { level: number; channels: number; attention: boolean; resolution_at_image_size?: number }[];
  schedule: Schedule | null;
  condition: ConditionSpec | null;
  source?: unknown;
}

/** A summary of a model for `sr3 info`. */
export function describeModel(m: SR3Model, fileBytes?: number): ModelSummary {
  let params = 0;
  for (const t of m.tensors.values()) params += shapeNumel(t.shape);
  const c = m.config;
  const levels = c.channel_mults.map((mult, i) => ({
    level: i,
    channels: c.inner_channel * mult,
    attention: c.attn_levels.includes(i),
    ...(c.image_size ? { resolution_at_image_size: Math.floor(c.image_size / 2 ** i) } : {}),
  }));
  return {
    format: `${m.metadata['format']} v${m.metadata['format_version']}`,
    ...(fileBytes !== undefined ? { file_bytes: fileBytes } : {}),
    dtype: m.dtype,
    parameters: params,
    tensors: m.tensors.size,
    config: c,
    levels,
    schedule: m.schedule ?? null,
    condition: m.condition ?? null,
    ...(m.metadata['source'] ? { source: safeJson(m.metadata['source']) } : {}),
  };
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Encode a model file from a config and float32 parameters by name (what a trainer saves). */
export function encodeModel(
  config: UNetConfig,
  param: (name: string) => Float32Array,
  meta: {
    schedule?: Schedule;
    condition?: ConditionSpec;
    extra?: Record<string, unknown>;
    dtype?: 'F32' | 'F16' | 'BF16';
  } = {},
): Uint8Array {
  const out = new Map<string, TensorEntry>();
  for (const [name, shape] of expectedParamShapes(config)) {
    out.set(
      name,
      castFloat(
        { dtype: 'F32', shape, data: new Uint8Array(param(name).slice().buffer) },
        meta.dtype ?? 'F32',
        `tensor ${name}`,
      ),
    );
  }
  const metadata: Record<string, string> = {
    format: FORMAT_NAME,
    format_version: String(FORMAT_VERSION),
    config: JSON.stringify(config),
  };
  if (meta.schedule) metadata.schedule = JSON.stringify(meta.schedule);
  if (meta.condition) metadata.condition = JSON.stringify(validateCondition(meta.condition));
  if (meta.extra) metadata.training = JSON.stringify(meta.extra);
  return writeSafetensors(out, metadata);
}
