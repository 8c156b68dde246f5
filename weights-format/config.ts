// The U-Net hyper-parameters of a reference SR3 model, as the engine uses them.
// Names follow the reference's JSON options (model.unet.*), with attention resolved to explicit level indices.

import { isPlainObject, ownValue } from './util.ts';

export interface UNetConfig {
  in_channel: number;
  out_channel: number;
  inner_channel: number;
  /** channel_multiplier in the reference options: one entry per resolution level. */
  channel_mults: number[];
  res_blocks: number;
  norm_groups: number;
  dropout: number;
  /**
   * Level indices (0 = full resolution) whose ResnetBlocks carry self-attention, in both the down and the up path.
   * The reference decides this by comparing attn_res with image_size / 2^level; we store the result explicitly so a
   * model runs at any input size. The first mid block always has attention, as in the reference.
   */
  attn_levels: number[];
  /** The reference's image_size, kept for information (it only decided attn_levels). */
  image_size?: number;
  /** The reference's attn_res, kept for information. */
  attn_res?: number[];
  /**
   * The activation after each GroupNorm and in the noise-level MLP: 'swish' (absent: the reference's) or 'gelu' (tanh
   * approximation). Not in the reference's options; a model file stores it in its config.
   */
  activation?: UNetActivation;
}

/** The activations a U-Net can use (shaders/activation.ts has their kernels' code). */
export const UNET_ACTIVATIONS = ['swish', 'gelu'] as const;
export type UNetActivation = (typeof UNET_ACTIVATIONS)[number];

/** The reference's rule: level `ind` has attention when image_size / 2^ind is in attn_res. */
export function resolveAttentionLevels(imageSize: number, attnRes: number[], levels: number): number[] {
  const out: number[] = [];
  let res = imageSize;
  for (let ind = 0; ind < levels; ind++) {
    if (attnRes.includes(res)) out.push(ind);
    if (ind !== levels - 1) res = Math.floor(res / 2);
  }
  return out;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/**
 * Check that `c` is a usable UNetConfig: positive integer channels, a non-empty channel_mults, res_blocks >= 1,
 * dropout in [0, 1), attention levels distinct and in range, and norm_groups dividing every channel count a GroupNorm
 * normalises. Returns a clean copy (only the known fields); throws an Error naming the first problem otherwise.
 */
export function validateConfig(c: unknown, where = 'config', groupsLabel = where): UNetConfig {
  if (!isPlainObject(c)) throw new Error(`${where}: the U-Net config is not an object`);
  const get = (k: string): unknown => ownValue(c, k);
  for (const k of ['in_channel', 'out_channel', 'inner_channel', 'res_blocks', 'norm_groups']) {
    if (!isPosInt(get(k))) throw new Error(`${where}: ${k} must be a positive integer, got ${JSON.stringify(get(k))}`);
  }
  const mults = get('channel_mults');
  if (!Array.isArray(mults) || mults.length === 0 || !mults.every(isPosInt)) {
    throw new Error(
      `${where}: channel_mults must be a non-empty list of positive integers, got ${JSON.stringify(mults)}`,
    );
  }
  if (mults.length > 16) throw new Error(`${where}: ${mults.length} resolution levels is more than any U-Net uses`);
  const dropout = get('dropout') ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    throw new Error(`${where}: dropout must be a number in [0, 1), got ${JSON.stringify(dropout)}`);
  }
  const attn = get('attn_levels');
  if (
    !Array.isArray(attn) ||
    !attn.every((l) => typeof l === 'number' && Number.isInteger(l) && l >= 0 && l < mults.length) ||
    new Set(attn).size !== attn.length
  ) {
    throw new Error(
      `${where}: attn_levels must list distinct level indices in 0..${mults.length - 1}, got ${JSON.stringify(attn)}`,
    );
  }
  const out: UNetConfig = {
    in_channel: get('in_channel') as number,
    out_channel: get('out_channel') as number,
    inner_channel: get('inner_channel') as number,
    channel_mults: (mults as number[]).slice(),
    res_blocks: get('res_blocks') as number,
    norm_groups: get('norm_groups') as number,
    dropout,
    attn_levels: (attn as number[]).slice().sort((a, b) => a - b),
  };
  const imageSize = get('image_size');
  if (imageSize !== undefined) {
    if (!isPosInt(imageSize))
      throw new Error(`${where}: image_size must be a positive integer, got ${JSON.stringify(imageSize)}`);
    out.image_size = imageSize;
  }
  const attnRes = get('attn_res');
  if (attnRes !== undefined) {
    if (!Array.isArray(attnRes) || !attnRes.every(isPosInt)) {
      throw new Error(`${where}: attn_res must be a list of positive integers, got ${JSON.stringify(attnRes)}`);
    }
    out.attn_res = attnRes.slice();
  }
  const activation = get('activation');
  if (activation !== undefined) {
    if (!UNET_ACTIVATIONS.includes(activation as UNetActivation)) {
      throw new Error(
        `${where}: activation must be one of ${UNET_ACTIVATIONS.join(', ')}, got ${JSON.stringify(activation)}`,
      );
    }
    out.activation = activation as UNetActivation;
  }
  checkNormGroups(out, groupsLabel);
  return out;
}

/** Every channel count a GroupNorm normalises in this U-Net (block1/block2/attention norms and final_conv's norm). */
export function normalizedChannels(c: UNetConfig): number[] {
  const s = new Set<number>();
  const inner = c.inner_channel;
  let pre = inner;
  const feats = [pre];
  for (let ind = 0; ind < c.channel_mults.length; ind++) {
    const ch = inner * c.channel_mults[ind];
    for (let b = 0; b < c.res_blocks; b++) {
      s.add(pre).add(ch);
      feats.push(ch);
      pre = ch;
    }
    if (ind !== c.channel_mults.length - 1) feats.push(pre);
  }
  s.add(pre);
  for (let ind = c.channel_mults.length - 1; ind >= 0; ind--) {
    const ch = inner * c.channel_mults[ind];
    for (let b = 0; b < c.res_blocks + 1; b++) {
      s.add(pre + (feats.pop() as number)).add(ch);
      pre = ch;
    }
  }
  s.add(pre);
  return [...s].sort((a, b) => a - b);
}

/** Throw a clear error unless norm_groups divides every normalised channel count. */
export function checkNormGroups(c: UNetConfig, where = 'config'): void {
  const bad = normalizedChannels(c).filter((n) => n % c.norm_groups !== 0);
  if (bad.length > 0) {
    throw new Error(
      `${where}: norm_groups ${c.norm_groups} does not divide the GroupNorm channel count(s) ${bad.join(', ')} of this U-Net; ` +
        `give the group count the model was trained with (--norm-groups N, or norm_groups in the options file)`,
    );
  }
}
