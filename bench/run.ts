// `npm run bench [-- --quick] [-- --json]`: kernel (conv2d forward and backward, GroupNorm, attention), whole-network
// (U-Net forward, 100-step upscale) and training-step timings on this machine's WebGPU device.
// --quick runs small shapes that finish on a software device (lavapipe) in a few minutes; without it, the shapes of
// the two reference configs of issue 6 (16->128 at 128x128 and 64->512 at 512x512), for a real GPU.
import { parseArgs } from 'node:util';
import { fmtBytes } from '../engine/gpu.ts';
import { CONV_KERNELS, type ConvKernel } from '../engine/options.ts';
import { DEFAULT_DAWN_FLAGS, dawnFlagsFromEnv, openDevice } from '../engine/node/device.ts';
import { attn, benchKernel, conv, convGrads, gn, type KernelCase } from './kernels.ts';
import { benchTrain, type TrainCase } from './train.ts';
import { benchUNet, benchUpscale, unetConfig, type UNetCase, type UpscaleCase } from './unet.ts';

type Case = KernelCase | UNetCase | UpscaleCase | TrainCase;

// --- the models
const REF_16_128 = unetConfig({ inner: 64, mults: [1, 2, 4, 8, 8], attnLevels: [3], resBlocks: 2, groups: 32 });
const REF_64_512 = unetConfig({ inner: 64, mults: [1, 2, 4, 8, 16], attnLevels: [], resBlocks: 1, groups: 16 });
/** The bundled natural4x checkpoint's architecture (6.1 M parameters), run at 64x64 in the quick set. */
const NATURAL4X = unetConfig({ inner: 32, mults: [1, 2, 4, 4], attnLevels: [3], resBlocks: 2, groups: 32 });
/** The golden `tiny` architecture. */
const TINY = unetConfig({ inner: 16, mults: [1, 2, 2], attnLevels: [2], resBlocks: 1, groups: 8 });

const unet = (model: string, config: UNetCase['config'], batch: number, size: number): UNetCase => ({
  kind: 'unet',
  name: `unet ${model} ${size}x${size} b${batch}`,
  model,
  config,
  batch,
  size,
});
const upscale = (
  model: string,
  config: UNetCase['config'],
  batch: number,
  size: number,
  schedule: string,
): UpscaleCase => ({
  kind: 'upscale',
  name: `upscale ${model} ${size}x${size} b${batch} ${schedule.split(':').slice(0, 2).join(':')} steps`,
  model,
  config,
  batch,
  size,
  schedule,
});

/** One training step (Trainer.step: condition, forward, loss, backward, clip, Adam, EMA) at batch `batch`, `size` px patches. */
const train = (model: string, config: UNetCase['config'], batch: number, size: number): TrainCase => ({
  kind: 'train',
  name: `train ${model} ${size}x${size} b${batch}`,
  model,
  config,
  batch,
  size,
});

/** Small shapes: everything finishes on lavapipe (2 CPU cores) in a few minutes. */
function quickCases(): Case[] {
  return [
    conv({ B: 1, C1: 64, H: 128, W: 128, Cout: 64, ks: 3 }), // the issue's yardstick
    conv({ B: 1, C1: 64, H: 128, W: 128, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
    conv({ B: 1, C1: 32, H: 64, W: 64, Cout: 32, ks: 3, norm: 2, groups: 32, res: true }),
    conv({ B: 1, C1: 64, C2: 64, H: 32, W: 32, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
    conv({ B: 1, C1: 64, C2: 64, H: 32, W: 32, Cout: 64, ks: 1 }),
    conv({ B: 1, C1: 6, H: 64, W: 64, Cout: 32, ks: 3 }),
    conv({ B: 1, C1: 32, H: 64, W: 64, Cout: 32, ks: 3, stride: 2 }),
    conv({ B: 1, C1: 128, H: 8, W: 8, Cout: 128, ks: 3, upsample: true }),
    conv({ B: 1, C1: 128, H: 8, W: 8, Cout: 384, ks: 1, norm: 1, groups: 32 }),
    // the backward (engine/ops/conv2d-backward.ts) of the yardstick, a GroupNorm+Swish conv over a skip concatenation, a
    // stride-2 Downsample and an upsampling conv
    ...convGrads({ B: 1, C1: 64, H: 128, W: 128, Cout: 64, ks: 3 }),
    ...convGrads({ B: 1, C1: 64, C2: 64, H: 32, W: 32, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
    ...convGrads({ B: 1, C1: 32, H: 64, W: 64, Cout: 32, ks: 3, stride: 2 }),
    ...convGrads({ B: 1, C1: 128, H: 8, W: 8, Cout: 128, ks: 3, upsample: true }),
    gn(1, 64, 128, 128, 32),
    gn(1, 128, 16, 16, 32),
    attn(1, 128, 8, 8),
    attn(1, 64, 32, 32),
    unet('tiny', TINY, 1, 32),
    unet('tiny', TINY, 8, 32),
    unet('natural4x', NATURAL4X, 1, 64),
    upscale('tiny', TINY, 1, 32, 'linear:100:1e-4:0.2'),
    train('tiny', TINY, 4, 32),
  ];
}

/** The reference configs' shapes (issue 6), for a real GPU. */
function fullCases(): Case[] {
  const cases: Case[] = [];
  // 16->128 at 128x128: every level's main convs (ResnetBlock convs with GroupNorm+Swish fused in), the up path's
  // concatenations, res_convs, Downsample/Upsample, attention's qkv, the attention core and GroupNorm statistics.
  for (const B of [1, 8]) {
    cases.push(
      conv({ B, C1: 6, H: 128, W: 128, Cout: 64, ks: 3 }),
      conv({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3 }),
      conv({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
      conv({ B, C1: 64, C2: 64, H: 128, W: 128, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
      conv({ B, C1: 64, C2: 64, H: 128, W: 128, Cout: 64, ks: 1 }),
      conv({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3, stride: 2 }),
      conv({ B, C1: 64, H: 64, W: 64, Cout: 128, ks: 3, norm: 2, groups: 32, emb: true }),
      conv({ B, C1: 128, H: 64, W: 64, Cout: 128, ks: 3, norm: 2, groups: 32, res: true }),
      conv({ B, C1: 128, H: 32, W: 32, Cout: 256, ks: 3, norm: 2, groups: 32, emb: true }),
      conv({ B, C1: 256, H: 32, W: 32, Cout: 256, ks: 3, norm: 2, groups: 32, res: true }),
      conv({ B, C1: 512, H: 16, W: 16, Cout: 512, ks: 3, norm: 2, groups: 32, res: true }),
      conv({ B, C1: 512, H: 16, W: 16, Cout: 1536, ks: 1, norm: 1, groups: 32 }),
      conv({ B, C1: 512, C2: 512, H: 8, W: 8, Cout: 512, ks: 3, norm: 2, groups: 32, emb: true }),
      conv({ B, C1: 512, H: 8, W: 8, Cout: 512, ks: 3, upsample: true }),
      conv({ B, C1: 64, H: 64, W: 64, Cout: 64, ks: 3, upsample: true }),
      gn(B, 64, 128, 128, 32),
      gn(B, 128, 128, 128, 32),
      gn(B, 512, 16, 16, 32),
      attn(B, 512, 16, 16),
      attn(B, 512, 8, 8),
      // the backward of the main shapes: level 0's plain and normalised convs, the skip concatenation, level 3's
      // 512-channel conv, the Downsample and the Upsample
      ...convGrads({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3 }),
      ...convGrads({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
      ...convGrads({ B, C1: 64, C2: 64, H: 128, W: 128, Cout: 64, ks: 3, norm: 2, groups: 32, emb: true }),
      ...convGrads({ B, C1: 256, H: 32, W: 32, Cout: 256, ks: 3, norm: 2, groups: 32 }),
      ...convGrads({ B, C1: 512, H: 16, W: 16, Cout: 512, ks: 3, norm: 2, groups: 32 }),
      ...convGrads({ B, C1: 64, H: 128, W: 128, Cout: 64, ks: 3, stride: 2 }),
      ...convGrads({ B, C1: 512, H: 8, W: 8, Cout: 512, ks: 3, upsample: true }),
    );
  }
  // 64->512 at 512x512 (batch 1): level 0 is 64 channels at full size, level 4 is 1024 channels at 32x32.
  cases.push(
    conv({ B: 1, C1: 6, H: 512, W: 512, Cout: 64, ks: 3 }),
    conv({ B: 1, C1: 64, H: 512, W: 512, Cout: 64, ks: 3, norm: 2, groups: 16, emb: true }),
    conv({ B: 1, C1: 64, C2: 64, H: 512, W: 512, Cout: 64, ks: 3, norm: 2, groups: 16, emb: true }),
    conv({ B: 1, C1: 128, H: 256, W: 256, Cout: 128, ks: 3, norm: 2, groups: 16, res: true }),
    conv({ B: 1, C1: 256, H: 128, W: 128, Cout: 256, ks: 3, norm: 2, groups: 16, res: true }),
    conv({ B: 1, C1: 512, H: 64, W: 64, Cout: 512, ks: 3, norm: 2, groups: 16, res: true }),
    conv({ B: 1, C1: 1024, H: 32, W: 32, Cout: 1024, ks: 3, norm: 2, groups: 16, res: true }),
    conv({ B: 1, C1: 1024, C2: 1024, H: 32, W: 32, Cout: 1024, ks: 3, norm: 2, groups: 16, emb: true }),
    conv({ B: 1, C1: 64, H: 256, W: 256, Cout: 64, ks: 3, upsample: true }),
    gn(1, 64, 512, 512, 16),
    attn(1, 1024, 32, 32),
    ...convGrads({ B: 1, C1: 64, H: 512, W: 512, Cout: 64, ks: 3, norm: 2, groups: 16, emb: true }),
    ...convGrads({ B: 1, C1: 512, H: 64, W: 64, Cout: 512, ks: 3, norm: 2, groups: 16 }),
    ...convGrads({ B: 1, C1: 1024, H: 32, W: 32, Cout: 1024, ks: 3, norm: 2, groups: 16 }),
    ...convGrads({ B: 1, C1: 64, H: 256, W: 256, Cout: 64, ks: 3, upsample: true }),
  );
  cases.push(
    unet('16->128', REF_16_128, 1, 128),
    unet('16->128', REF_16_128, 8, 128),
    unet('64->512', REF_64_512, 1, 512),
    unet('64->512', REF_64_512, 8, 512),
    upscale('16->128', REF_16_128, 1, 128, 'linear:100:1e-4:0.2'),
    upscale('16->128', REF_16_128, 8, 128, 'linear:100:1e-4:0.2'),
    train('16->128', REF_16_128, 1, 128),
    train('16->128', REF_16_128, 8, 128),
  );
  return cases;
}

const HELP = `usage: npm run bench -- [--quick] [--json] [--filter REGEX] [--reps N] [--profile] [--conv-kernel tiled|direct|f16|mma|mma3]

  --quick        small shapes that finish on a software device (the default set is the reference configs' shapes)
  --json         one JSON object per line: name, kind (kernel, unet, upscale, train), device, timer and the figures
                 (kernels ms, gflops, gbps; U-Nets ms_per_step, ms_per_image, peak_bytes; upscales ms_per_step,
                 images_per_s; training steps ms_per_step, images_per_s, peak_bytes)
  --filter RE    only the cases whose name matches RE (e.g. --filter conv3x3, --filter unet, --filter 'dX|dW|train')
  --reps N       timed samples per case (median reported; default 5 with --quick, 20 otherwise)
  --profile      for U-Net cases, also time every dispatch alone and print where a step goes (by pipeline, and
                 the 15 slowest dispatches)
  --conv-kernel  force the conv2d shader (default: direct on a software device, tiled on a GPU); f16 and mma are
                 the mixed-precision kernels (f16 operands, f32 accumulation; mma on tensor cores)

GPU time comes from timestamp queries when the adapter has 'timestamp-query', else from the wall clock around
submit + onSubmittedWorkDone.`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      json: { type: 'boolean' },
      filter: { type: 'string' },
      reps: { type: 'string' },
      'conv-kernel': { type: 'string' },
      profile: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const quick = !!values.quick;
  const json = !!values.json;
  const reps = values.reps ? Number(values.reps) : quick ? 5 : 20;
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
  const filter = values.filter ? new RegExp(values.filter) : null;
  const forced = values['conv-kernel'];
  if (forced && !CONV_KERNELS.includes(forced as ConvKernel))
    throw new Error(`--conv-kernel must be one of ${CONV_KERNELS.join(', ')}, got ${forced}`);

  const ctx = await openDevice(forced ? { engine: { convKernel: forced as ConvKernel } } : {});
  try {
    const device = ctx.adapter.description;
    // the effective settings, as the context holds them (SR3_* variables and --conv-kernel)
    const o = ctx.options;
    const common = {
      device,
      backend: ctx.adapter.backend || undefined,
      software: ctx.adapter.isSoftware,
      conv_kernel: o.convKernel,
      // split-K's workgroup target (0: off, as on the software paths; SR3_SPLIT_K sets it)
      split_k: o.paths === 'software' ? 0 : o.splitK.target,
      // the GEMM kernel's tile when fixed (SR3_TILED_TILE, SR3_MMA_TILE), else chosen per conv
      // Dawn toggles and features beyond the defaults (SR3_DAWN_FLAGS), e.g. disable_robustness
      dawn_extra: dawnExtra(),
      // whether the GEMM conv prefetches the next k-step into registers (SR3_TILED_PREFETCH, SR3_MMA_PREFETCH)
      prefetch: o.convKernel === 'tiled' ? o.tiledPrefetch : o.mma.prefetch,
      // the attention form when fixed (SR3_ATTENTION), else chosen per layer (EngineOptions.attention)
      attention: o.attention,
      // where GroupNorm(+Swish) is applied when fixed (SR3_NORM), else by the code paths (EngineOptions.norm)
      norm: o.norm,
      // the batched gather (SR3_BATCH_LOADS) in the tiled and mixed-precision kernels, and the subgroups of a
      // tensor-core workgroup (SR3_MMA_SUBGROUPS)
      batch_loads: o.batchLoads,
      mma_subgroups: o.mma.subgroups,
      // padded tensor-core tiles in workgroup memory (SR3_MMA_PAD)
      mma_pad: o.mma.pad,
      // reduction elements a tensor-core k-step (SR3_MMA_TK)
      mma_tk: o.mma.tk,
      tile: o.convKernel.startsWith('mma')
        ? o.mma.TM
          ? `${o.mma.TM}x${o.mma.TN}`
          : 'auto'
        : o.tiledTile.TM
          ? `${o.tiledTile.TM}x${o.tiledTile.TN}`
          : 'auto',
    };
    const cases = (quick ? quickCases() : fullCases()).filter((c) => !filter || filter.test(c.name));
    const note = (s: string) => (json ? console.error(s) : console.log(s));
    if (!json) {
      console.log(
        `device: ${device}${ctx.adapter.isSoftware ? ' (software)' : ''}; timer: ${ctx.features.timestampQuery ? 'timestamp queries' : 'wall clock'}; conv2d kernel: ${common.conv_kernel}${common.split_k ? `, split-K below ${common.split_k} workgroups` : ''}; ${reps} samples per case, median`,
      );
    }
    const table = new Table();
    let failed = 0;
    for (const c of cases) {
      try {
        if (c.kind === 'unet') {
          const r = await benchUNet(ctx, c, { reps, warmup: 1, profile: !!values.profile });
          const { timing, profile, ...rest } = r;
          if (json)
            console.log(
              JSON.stringify({
                ...rest,
                kind: 'unet',
                timer: timing.source,
                ms: timing.ms,
                ms_min: timing.min,
                per_sample: timing.perSample,
                ...common,
              }),
            );
          else table.unet(r);
          if (profile) {
            if (json)
              console.log(JSON.stringify({ name: `profile ${c.name}`, kind: 'profile', ...profile, ...common }));
            else printProfile(c.name, profile);
          }
        } else if (c.kind === 'upscale') {
          const r = await benchUpscale(ctx, c, Math.min(reps, 3));
          if ('skipped' in r) {
            note(`${c.name}: skipped (${r.skipped})`);
            continue;
          }
          if (json) console.log(JSON.stringify({ ...r, kind: 'upscale', timer: 'wall', ...common }));
          else table.upscale(r);
        } else if (c.kind === 'train') {
          const r = await benchTrain(ctx, c, Math.min(reps, quick ? 5 : 10));
          if (json) console.log(JSON.stringify({ ...r, kind: 'train', timer: 'wall', ...common }));
          else table.train(r);
        } else {
          const r = await benchKernel(ctx, c, { reps, warmup: 1 });
          const { timing, ...rest } = r;
          if (json)
            console.log(
              JSON.stringify({
                ...rest,
                timer: timing.source,
                ms_min: timing.min,
                per_sample: timing.perSample,
                ...common,
              }),
            );
          else table.kernel(r);
        }
      } catch (e) {
        failed++;
        note(`${c.name}: failed (${(e as Error).message.split('\n')[0]})`);
        try {
          ctx.check(); // drop errors the failure left behind, so the next case starts clean
        } catch {
          /* reported above */
        }
      }
    }
    if (failed) note(`${failed} of ${cases.length} cases failed`);
    return failed ? 1 : 0;
  } finally {
    ctx.destroy();
  }
}

/** The readable output: kernels in one table, networks in another, printed as they finish. */
class Table {
  private kernelHeader = false;
  private unetHeader = false;
  kernel(r: Awaited<ReturnType<typeof benchKernel>>): void {
    if (!this.kernelHeader) {
      console.log(
        `\n${'kernel'.padEnd(50)} ${'ms'.padStart(9)} ${'best ms'.padStart(9)} ${'GFLOP/s'.padStart(9)} ${'GB/s'.padStart(8)}  timer`,
      );
      this.kernelHeader = true;
      this.unetHeader = false;
    }
    console.log(
      `${r.name.padEnd(50)} ${fmt(r.ms).padStart(9)} ${fmt(r.timing.min).padStart(9)} ${(r.gflops === null ? '-' : r.gflops.toFixed(2)).padStart(9)} ${r.gbps.toFixed(2).padStart(8)}  ${r.timing.source}`,
    );
  }
  unet(r: Awaited<ReturnType<typeof benchUNet>>): void {
    if (!this.unetHeader) {
      console.log(
        `\n${'network (one forward = one step)'.padEnd(34)} ${'ms/step'.padStart(9)} ${'ms/image'.padStart(9)} ${'GFLOP'.padStart(7)} ${'GFLOP/s'.padStart(8)} ${'peak mem'.padStart(10)} ${'wall/step'.padStart(9)} ${'encode'.padStart(7)}  build`,
      );
      this.unetHeader = true;
      this.kernelHeader = false;
    }
    console.log(
      `${r.name.padEnd(34)} ${fmt(r.ms_per_step).padStart(9)} ${fmt(r.ms_per_image).padStart(9)} ${r.gflop.toFixed(2).padStart(7)} ${r.gflops.toFixed(2).padStart(8)} ${fmtBytes(r.peak_bytes).padStart(10)} ${fmt(r.wall_ms_per_step).padStart(9)} ${fmt(r.encode_ms).padStart(7)}  ${(r.build_ms / 1e3).toFixed(1)} s`,
    );
  }
  upscale(r: Exclude<Awaited<ReturnType<typeof benchUpscale>>, { skipped: string }>): void {
    console.log(
      `\n${r.name}: ${fmt(r.ms)} ms for ${r.steps} steps (${fmt(r.ms_per_step)} ms/step), ${r.images_per_s.toFixed(3)} images/s`,
    );
    this.kernelHeader = false;
    this.unetHeader = false;
  }
  train(r: Awaited<ReturnType<typeof benchTrain>>): void {
    console.log(
      `\n${r.name} (condition + forward + loss + backward + clip + Adam + EMA): ${fmt(r.ms_per_step)} ms/step (best ${fmt(r.ms_min)}, ${r.steps} steps), ` +
        `${r.images_per_s.toFixed(2)} images/s, ${(r.params / 1e6).toFixed(2)} M params, peak ${fmtBytes(r.peak_bytes)}, build ${(r.build_ms / 1e3).toFixed(1)} s`,
    );
    this.kernelHeader = false;
    this.unetHeader = false;
  }
}

function printProfile(name: string, p: NonNullable<Awaited<ReturnType<typeof benchUNet>>['profile']>): void {
  console.log(
    `\n${name}: ${fmt(p.step_ms)} ms as one pass, ${fmt(p.sum_alone_ms)} ms as the sum of its dispatches timed alone`,
  );
  for (const b of p.by_pipeline)
    console.log(
      `  ${b.pipeline.padEnd(28)} ${fmt(b.ms).padStart(9)} ms  ${(100 * b.share).toFixed(1).padStart(5)}%  x${b.count}`,
    );
  console.log('  slowest dispatches:');
  for (const t of p.top)
    console.log(
      `    ${t.label.padEnd(40)} ${t.pipeline.padEnd(24)} ${fmt(t.ms).padStart(9)} ms  [${t.workgroups.join(', ')}]`,
    );
}

function fmt(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(`error: ${(e as Error).message}`);
    process.exitCode = 1;
  },
);

/** The Dawn toggles/features SR3_DAWN_FLAGS adds to the defaults (comma-separated), or undefined when none. */
function dawnExtra(): string | undefined {
  const items = (flags: readonly string[]) => flags.flatMap((f) => f.split('=')[1]?.split(',') ?? [f]);
  const base = new Set(items(DEFAULT_DAWN_FLAGS));
  const extra = items(dawnFlagsFromEnv()).filter((t) => !base.has(t));
  return extra.length ? extra.join(',') : undefined;
}
