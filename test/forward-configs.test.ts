// U-Nets outside the golden set, against the float64 TypeScript composition of the reference's layers:
// non-square maps, batch 3, grayscale (2 -> 1 channels), attention at two levels, three levels, one res block.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UNet } from '../engine/unet.ts';
import type { UNetConfig } from '../weights-format/config.ts';
import { expectedParamShapes } from '../weights-format/index.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';
import { t4 } from './reference/nn-ref.ts';
import { unetForward } from './reference/unet-ref.ts';

function randomWeights(cfg: UNetConfig, seed: number) {
  const params = new Map<string, Float32Array>();
  let s = seed;
  for (const [name, shape] of expectedParamShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? n / shape[0] : 1;
    const isNormWeight = /(block\.0|norm)\.weight$/.test(name);
    params.set(
      name,
      rand(n, s++).map((v) => (isNormWeight ? 1 + 0.2 * v : v / Math.sqrt(fanIn))),
    );
  }
  return {
    config: cfg,
    param: (name: string) => {
      const v = params.get(name);
      if (!v) throw new Error(`no ${name}`);
      return v;
    },
  };
}

const cases: { name: string; cfg: UNetConfig; B: number; H: number; W: number }[] = [
  {
    name: 'grayscale 2->1, attention at two levels, batch 3, non-square 8x12',
    cfg: {
      in_channel: 2,
      out_channel: 1,
      inner_channel: 8,
      channel_mults: [1, 2],
      res_blocks: 1,
      norm_groups: 4,
      dropout: 0,
      attn_levels: [0, 1],
    },
    B: 3,
    H: 8,
    W: 12,
  },
  {
    name: 'three levels, two res blocks, 6->3, non-square 12x8, odd channel multipliers',
    cfg: {
      in_channel: 6,
      out_channel: 3,
      inner_channel: 6,
      channel_mults: [1, 3, 2],
      res_blocks: 2,
      norm_groups: 3,
      dropout: 0,
      attn_levels: [2],
    },
    B: 1,
    H: 12,
    W: 8,
  },
];

for (const c of cases) {
  test(c.name, async () => {
    const ctx = await device();
    const w = randomWeights(c.cfg, 11);
    const net = await UNet.build(ctx, w, { batch: c.B, height: c.H, width: c.W });
    const x = rand(c.B * c.cfg.in_channel * c.H * c.W, 5);
    const level = new Float32Array(c.B).map((_, i) => 0.1 + 0.35 * i);
    const got = await net.forward(x, level);
    const want = unetForward(c.cfg, w.param, t4(c.B, c.cfg.in_channel, c.H, c.W, x), level);
    assert.is(got.length, want.data.length);
    const err = relErr(got, want.data);
    assert.ok(err <= 1e-4, `relative error ${err}`);
    net.destroy();
  });
}

test.after(releaseDevice);
test.run();
