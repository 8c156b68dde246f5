// The reference's JSON options file (config/*.json of the reference repository; // comments allowed):
// U-Net hyper-parameters, the training beta schedule, and how the condition image was made.

import { type UNetConfig, resolveAttentionLevels, validateConfig } from './config.ts';
import { type Schedule, validateSchedule } from './schedule.ts';
import { isPlainObject as isObj, ownValue as own } from './util.ts';

/** How the condition image (the upscaled low-resolution input) is made. */
export interface ConditionSpec {
  /** Upscaling factor between the low-resolution input and the output. */
  scale?: number;
  /** Resampling kernel used to make the LR image and to upscale it back, e.g. "bicubic". */
  resample?: string;
  /** Bicubic kernel parameter a: -0.5 for PIL (the reference's data preparation), -0.75 for PyTorch. */
  bicubic_a?: number;
  /** Whether the upscaled condition is clamped to [-1, 1]. */
  clamp?: boolean;
  /** Free text from the options file, kept verbatim. */
  note?: string;
}

/**
 * Remove // line comments and /* block comments *\/ from JSON text, leaving string literals (which may contain "//",
 * as in URLs) untouched. Newlines are kept so JSON error positions still point at the right line.
 */
export function stripJsonComments(text: string): string {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      const start = i++;
      while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      out += text.slice(start, i);
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, '');
      i = stop;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

export interface ParsedOptions {
  /** The U-Net config; norm_groups is undefined when the file does not give it. */
  unet: Omit<UNetConfig, 'norm_groups'> & { norm_groups?: number };
  schedule?: Schedule;
  condition?: ConditionSpec;
}

type Obj = Record<string, unknown>;

/** Parse the reference's options JSON (the whole file, or just its "model" section). */
export function parseReferenceOptions(text: string, where = 'options file'): ParsedOptions {
  let root: unknown;
  try {
    root = JSON.parse(stripJsonComments(text));
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(root)) throw new Error(`${where}: not a JSON object`);
  const model = isObj(own(root, 'model')) ? (own(root, 'model') as Obj) : root;
  const unet = own(model, 'unet');
  if (!isObj(unet)) throw new Error(`${where}: no model.unet section (expected the reference's options JSON)`);
  const need = (k: string) => {
    const v = own(unet, k);
    if (v === undefined) throw new Error(`${where}: model.unet.${k} is missing`);
    return v;
  };
  const mults = need('channel_multiplier');
  if (!Array.isArray(mults)) throw new Error(`${where}: model.unet.channel_multiplier must be a list`);
  let attnRes = need('attn_res');
  if (typeof attnRes === 'number') attnRes = [attnRes];
  if (!Array.isArray(attnRes) || !attnRes.every((x) => typeof x === 'number')) {
    throw new Error(`${where}: model.unet.attn_res must be a list of resolutions`);
  }
  const diffusion = own(model, 'diffusion');
  const imageSize = own(isObj(diffusion) ? diffusion : undefined, 'image_size');
  if (typeof imageSize !== 'number' || !Number.isSafeInteger(imageSize) || imageSize < 1) {
    throw new Error(
      `${where}: model.diffusion.image_size is missing or not a positive integer (it decides where attention sits)`,
    );
  }
  const ng = own(unet, 'norm_groups');
  const cfg = validateConfig(
    {
      in_channel: need('in_channel'),
      out_channel: need('out_channel'),
      inner_channel: need('inner_channel'),
      channel_mults: mults,
      res_blocks: need('res_blocks'),
      norm_groups: ng ?? 32, // checked again once the final group count is known
      dropout: own(unet, 'dropout') ?? 0,
      attn_levels: resolveAttentionLevels(imageSize, attnRes as number[], mults.length),
      image_size: imageSize,
      attn_res: attnRes,
    },
    where,
  );
  const out: ParsedOptions = {
    unet: { ...cfg, norm_groups: ng === undefined || ng === null ? undefined : cfg.norm_groups },
  };

  const bs = own(model, 'beta_schedule');
  const train = own(isObj(bs) ? bs : undefined, 'train');
  if (isObj(train)) out.schedule = validateSchedule(train, `${where}: model.beta_schedule.train`);

  const cond: ConditionSpec = {};
  const data = own(root, 'data');
  const datasets = own(root, 'datasets');
  const dscale = own(isObj(data) ? data : undefined, 'scale');
  if (typeof dscale === 'number' && dscale > 0) cond.scale = dscale;
  if (isObj(datasets)) {
    for (const phase of ['train', 'val']) {
      const d = own(datasets, phase);
      if (!isObj(d)) continue;
      const l = own(d, 'l_resolution');
      const r = own(d, 'r_resolution');
      if (cond.scale === undefined && typeof l === 'number' && typeof r === 'number' && l > 0 && r % l === 0) {
        cond.scale = r / l;
        // The reference's data preparation resizes with PIL's bicubic (a = -0.5) both ways.
        cond.resample = 'bicubic';
        cond.bicubic_a = -0.5;
      }
    }
  }
  const note = own(isObj(data) ? data : undefined, 'condition');
  if (typeof note === 'string') {
    cond.note = note;
    if (/bicubic/i.test(note)) cond.resample = 'bicubic';
    const a = /a\s*=\s*(-?[0-9.]+)/.exec(note);
    if (a) cond.bicubic_a = Number(a[1]);
    if (/clamp/i.test(note)) cond.clamp = true;
  }
  if (Object.keys(cond).length > 0) out.condition = cond;
  return out;
}

/** Validate a condition object read from a model file. */
export function validateCondition(v: unknown, where = 'condition'): ConditionSpec {
  if (!isObj(v)) throw new Error(`${where}: not an object`);
  const out: ConditionSpec = {};
  const scale = own(v, 'scale');
  if (scale !== undefined) {
    if (typeof scale !== 'number' || !(scale > 0) || !Number.isFinite(scale))
      throw new Error(`${where}: scale must be a positive number`);
    out.scale = scale;
  }
  const resample = own(v, 'resample');
  if (resample !== undefined) {
    if (typeof resample !== 'string') throw new Error(`${where}: resample must be a string`);
    out.resample = resample;
  }
  const a = own(v, 'bicubic_a');
  if (a !== undefined) {
    if (typeof a !== 'number' || !Number.isFinite(a)) throw new Error(`${where}: bicubic_a must be a number`);
    out.bicubic_a = a;
  }
  const clamp = own(v, 'clamp');
  if (clamp !== undefined) {
    if (typeof clamp !== 'boolean') throw new Error(`${where}: clamp must be true or false`);
    out.clamp = clamp;
  }
  const note = own(v, 'note');
  if (note !== undefined) {
    if (typeof note !== 'string') throw new Error(`${where}: note must be a string`);
    out.note = note;
  }
  return out;
}
