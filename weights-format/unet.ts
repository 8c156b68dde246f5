// The reference U-Net's parameters (Janspiry "Image-Super-Resolution-via-Iterative-Refinement",
// model/sr3_modules/unet.py): names and shapes from a config, and a config inferred from names and shapes.

import { type UNetConfig, validateConfig } from './config.ts';

/** Every U-Net parameter name (without "denoise_fn.") and its shape, in the reference's registration order. */
export function expectedParamShapes(cfg: UNetConfig): Map<string, number[]> {
  const c = validateConfig(cfg);
  const m = new Map<string, number[]>();
  const inner = c.inner_channel;
  const add = (name: string, shape: number[]) => m.set(name, shape);
  const resBlock = (p: string, dimIn: number, ch: number, attn: boolean) => {
    add(`${p}.res_block.noise_func.noise_func.0.weight`, [ch, inner]);
    add(`${p}.res_block.noise_func.noise_func.0.bias`, [ch]);
    add(`${p}.res_block.block1.block.0.weight`, [dimIn]);
    add(`${p}.res_block.block1.block.0.bias`, [dimIn]);
    add(`${p}.res_block.block1.block.3.weight`, [ch, dimIn, 3, 3]);
    add(`${p}.res_block.block1.block.3.bias`, [ch]);
    add(`${p}.res_block.block2.block.0.weight`, [ch]);
    add(`${p}.res_block.block2.block.0.bias`, [ch]);
    add(`${p}.res_block.block2.block.3.weight`, [ch, ch, 3, 3]);
    add(`${p}.res_block.block2.block.3.bias`, [ch]);
    if (dimIn !== ch) {
      add(`${p}.res_block.res_conv.weight`, [ch, dimIn, 1, 1]);
      add(`${p}.res_block.res_conv.bias`, [ch]);
    }
    if (attn) {
      add(`${p}.attn.norm.weight`, [ch]);
      add(`${p}.attn.norm.bias`, [ch]);
      add(`${p}.attn.qkv.weight`, [3 * ch, ch, 1, 1]);
      add(`${p}.attn.out.weight`, [ch, ch, 1, 1]);
      add(`${p}.attn.out.bias`, [ch]);
    }
  };

  add('noise_level_mlp.1.weight', [inner * 4, inner]);
  add('noise_level_mlp.1.bias', [inner * 4]);
  add('noise_level_mlp.3.weight', [inner, inner * 4]);
  add('noise_level_mlp.3.bias', [inner]);
  add('downs.0.weight', [inner, c.in_channel, 3, 3]);
  add('downs.0.bias', [inner]);
  const levels = c.channel_mults.length;
  let pre = inner;
  const feats = [pre];
  let k = 1;
  for (let ind = 0; ind < levels; ind++) {
    const ch = inner * c.channel_mults[ind];
    const attn = c.attn_levels.includes(ind);
    for (let b = 0; b < c.res_blocks; b++) {
      resBlock(`downs.${k++}`, pre, ch, attn);
      feats.push(ch);
      pre = ch;
    }
    if (ind !== levels - 1) {
      add(`downs.${k}.conv.weight`, [pre, pre, 3, 3]);
      add(`downs.${k}.conv.bias`, [pre]);
      k++;
      feats.push(pre);
    }
  }
  resBlock('mid.0', pre, pre, true);
  resBlock('mid.1', pre, pre, false);
  k = 0;
  for (let ind = levels - 1; ind >= 0; ind--) {
    const ch = inner * c.channel_mults[ind];
    const attn = c.attn_levels.includes(ind);
    for (let b = 0; b < c.res_blocks + 1; b++) {
      resBlock(`ups.${k++}`, pre + (feats.pop() as number), ch, attn);
      pre = ch;
    }
    if (ind > 0) {
      add(`ups.${k}.conv.weight`, [pre, pre, 3, 3]);
      add(`ups.${k}.conv.bias`, [pre]);
      k++;
    }
  }
  add('final_conv.block.0.weight', [pre]);
  add('final_conv.block.0.bias', [pre]);
  add('final_conv.block.3.weight', [c.out_channel, pre, 3, 3]);
  add('final_conv.block.3.bias', [c.out_channel]);
  return m;
}

export function paramCount(cfg: UNetConfig): number {
  let n = 0;
  for (const s of expectedParamShapes(cfg).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Compare a set of U-Net tensors (names without "denoise_fn.") with what `cfg` needs. Returns a list of problems
 * (missing, unexpected, wrong shape), empty when they match exactly.
 */
export function diffParams(cfg: UNetConfig, shapes: Map<string, readonly number[]>): string[] {
  const want = expectedParamShapes(cfg);
  const problems: string[] = [];
  for (const [name, shape] of want) {
    const got = shapes.get(name);
    if (!got) problems.push(`missing ${name} ${JSON.stringify(shape)}`);
    else if (!sameShape(got, shape))
      problems.push(`${name} has shape ${JSON.stringify(got)}, expected ${JSON.stringify(shape)}`);
  }
  for (const name of shapes.keys()) if (!want.has(name)) problems.push(`unexpected tensor ${name}`);
  return problems;
}

export function summarizeProblems(problems: string[], max = 6): string {
  const head = problems.slice(0, max).join('; ');
  return problems.length > max ? `${head}; and ${problems.length - max} more` : head;
}

/**
 * Infer the U-Net config from parameter names and shapes (names without "denoise_fn."). GroupNorm's group count is not
 * recorded in the tensors: pass it (the reference's default is 32). The result is verified by recomputing every
 * expected shape; a mismatch throws an Error listing the problems.
 */
export function inferConfig(
  shapes: Map<string, readonly number[]>,
  normGroups = 32,
  dropout = 0,
  groupsLabel = `norm_groups ${normGroups}`,
): UNetConfig {
  const get = (n: string) => {
    const s = shapes.get(n);
    if (!s) throw new Error(`cannot infer the U-Net config: tensor ${n} is missing (is this an SR3 U-Net checkpoint?)`);
    return s;
  };
  const first = get('downs.0.weight');
  const last = get('final_conv.block.3.weight');
  if (first.length !== 4 || last.length !== 4)
    throw new Error('cannot infer the U-Net config: downs.0 or final_conv is not a 2-D conv');
  const inner = first[0];
  const inCh = first[1];
  const outCh = last[0];
  // Walk ups.*: groups of (res_blocks + 1) ResnetBlocks separated by Upsample convs, deepest level first.
  const groups: { ch: number; attn: boolean[] }[] = [{ ch: -1, attn: [] }];
  for (let k = 0; ; k++) {
    if (shapes.has(`ups.${k}.conv.weight`)) {
      groups.push({ ch: -1, attn: [] });
      continue;
    }
    const w = shapes.get(`ups.${k}.res_block.block2.block.3.weight`);
    if (!w) break;
    const g = groups[groups.length - 1];
    if (g.ch !== -1 && g.ch !== w[0]) {
      throw new Error(`cannot infer the U-Net config: ups.${k} has ${w[0]} channels but its level has ${g.ch}`);
    }
    g.ch = w[0];
    g.attn.push(shapes.has(`ups.${k}.attn.qkv.weight`));
  }
  if (groups.some((g) => g.attn.length === 0))
    throw new Error('cannot infer the U-Net config: the ups.* layers are missing or out of order');
  const perLevel = groups[0].attn.length;
  if (groups.some((g) => g.attn.length !== perLevel) || perLevel < 2) {
    throw new Error(
      `cannot infer the U-Net config: levels of the up path have ${groups.map((g) => g.attn.length).join('/')} blocks`,
    );
  }
  const levels = groups.length;
  const mults: number[] = [];
  const attnLevels: number[] = [];
  for (let i = 0; i < levels; i++) {
    const g = groups[levels - 1 - i];
    if (g.ch % inner !== 0)
      throw new Error(`cannot infer the U-Net config: level ${i} has ${g.ch} channels, not a multiple of ${inner}`);
    mults.push(g.ch / inner);
    if (g.attn.some((a) => a !== g.attn[0]))
      throw new Error(`cannot infer the U-Net config: level ${i} has attention in some blocks only`);
    if (g.attn[0]) attnLevels.push(i);
  }
  const cfg = validateConfig(
    {
      in_channel: inCh,
      out_channel: outCh,
      inner_channel: inner,
      channel_mults: mults,
      res_blocks: perLevel - 1,
      norm_groups: normGroups,
      dropout,
      attn_levels: attnLevels,
    },
    'inferred config',
    groupsLabel,
  );
  const problems = diffParams(cfg, shapes);
  if (problems.length > 0) {
    throw new Error(
      `the tensors do not form a reference SR3 U-Net (inferred ${JSON.stringify({ ...cfg, norm_groups: undefined })}): ${summarizeProblems(problems)}`,
    );
  }
  return cfg;
}
