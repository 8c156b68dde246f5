// The U-Net hyper-parameters of a reference SR3 model, as the engine uses them.
// Names follow the reference's JSON options (model.unet.*), with attention resolved to explicit level indices.

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
}

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
