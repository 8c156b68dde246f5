// The reference U-Net forward (unet.py) composed from the float64 op references: test-only, for configs that the
// golden set does not cover.
import type { UNetConfig } from '../../weights-format/config.ts';
import * as R from './nn-ref.ts';

type P = (name: string) => Float32Array;

function resBlock(p: P, name: string, x: R.T4, dimOut: number, G: number, t: Float64Array, withAttn: boolean): R.T4 {
  const q = `${name}.res_block`;
  const dimIn = x.C;
  const B = x.B;
  let h = R.groupNorm(x, G, p(`${q}.block1.block.0.weight`), p(`${q}.block1.block.0.bias`), true);
  h = R.conv2d(h, p(`${q}.block1.block.3.weight`), p(`${q}.block1.block.3.bias`), dimOut, 3);
  const inner = t.length / B;
  const e = R.linear(
    t,
    B,
    inner,
    p(`${q}.noise_func.noise_func.0.weight`),
    p(`${q}.noise_func.noise_func.0.bias`),
    dimOut,
  );
  h = R.addPerChannel(h, e);
  let h2 = R.groupNorm(h, G, p(`${q}.block2.block.0.weight`), p(`${q}.block2.block.0.bias`), true);
  h2 = R.conv2d(h2, p(`${q}.block2.block.3.weight`), p(`${q}.block2.block.3.bias`), dimOut, 3);
  const r = dimIn !== dimOut ? R.conv2d(x, p(`${q}.res_conv.weight`), p(`${q}.res_conv.bias`), dimOut, 1) : x;
  let y = R.add(h2, r);
  if (withAttn) {
    const a = `${name}.attn`;
    const n = R.groupNorm(y, G, p(`${a}.norm.weight`), p(`${a}.norm.bias`), false);
    const qkv = R.conv2d(n, p(`${a}.qkv.weight`), null, 3 * dimOut, 1);
    const core = R.attentionCore(qkv);
    y = R.add(R.conv2d(core, p(`${a}.out.weight`), p(`${a}.out.bias`), dimOut, 1), y);
  }
  return y;
}

export function unetForward(cfg: UNetConfig, p: P, xIn: R.T4, noiseLevel: ArrayLike<number>): R.T4 {
  const B = xIn.B;
  const inner = cfg.inner_channel;
  const G = cfg.norm_groups;
  const enc = R.positionalEncoding(noiseLevel, inner);
  const h1 = R.linear(enc, B, inner, p('noise_level_mlp.1.weight'), p('noise_level_mlp.1.bias'), 4 * inner);
  const t = R.linear(h1, B, 4 * inner, p('noise_level_mlp.3.weight'), p('noise_level_mlp.3.bias'), inner, true);
  let x = R.conv2d(xIn, p('downs.0.weight'), p('downs.0.bias'), inner, 3);
  const feats = [x];
  let idx = 1;
  const L = cfg.channel_mults.length;
  for (let lvl = 0; lvl < L; lvl++) {
    for (let r = 0; r < cfg.res_blocks; r++) {
      x = resBlock(p, `downs.${idx++}`, x, inner * cfg.channel_mults[lvl], G, t, cfg.attn_levels.includes(lvl));
      feats.push(x);
    }
    if (lvl !== L - 1) {
      x = R.conv2d(x, p(`downs.${idx}.conv.weight`), p(`downs.${idx}.conv.bias`), x.C, 3, 2);
      idx++;
      feats.push(x);
    }
  }
  x = resBlock(p, 'mid.0', x, x.C, G, t, true);
  x = resBlock(p, 'mid.1', x, x.C, G, t, false);
  idx = 0;
  for (let lvl = L - 1; lvl >= 0; lvl--) {
    for (let r = 0; r < cfg.res_blocks + 1; r++) {
      x = resBlock(
        p,
        `ups.${idx++}`,
        R.concat(x, feats.pop()!),
        inner * cfg.channel_mults[lvl],
        G,
        t,
        cfg.attn_levels.includes(lvl),
      );
    }
    if (lvl !== 0) {
      x = R.conv2d(R.upsample2(x), p(`ups.${idx}.conv.weight`), p(`ups.${idx}.conv.bias`), x.C, 3);
      idx++;
    }
  }
  x = R.groupNorm(x, G, p('final_conv.block.0.weight'), p('final_conv.block.0.bias'), true);
  return R.conv2d(x, p('final_conv.block.3.weight'), p('final_conv.block.3.bias'), cfg.out_channel, 3);
}
