// A TypeScript consumer of the installed package, typechecked against the installed .d.ts (never run): the Node
// API, the page-safe entry and the low-level one.
import { createUpscaler, encodePng, type NodeUpscaler, type NodeUpscaleResult, type PixelImage } from 'sr3-wgsl';
import { createUpscaler as createPageUpscaler, type BrowserUpscaler } from 'sr3-wgsl/browser';
import {
  type GpuContext,
  kernels,
  parseSchedule,
  photoCrops,
  Sampler,
  Trainer,
  type TrainerState,
  UNet,
  uploadUNetParams,
  type UNetParams,
} from 'sr3-wgsl/core';

export async function upscaleTwo(files: [string, string]): Promise<PixelImage[]> {
  const up: NodeUpscaler = await createUpscaler({ steps: 20, sampler: 'ddim' });
  try {
    const out: PixelImage[] = [];
    for (const f of files) {
      const r: NodeUpscaleResult = await up.upscale(f, {
        seed: 1,
        onProgress: (done: number, total: number) => void [done, total],
      });
      const png: Buffer = r.png();
      void png;
      await r.save(`${f}.4x.png`);
      out.push(r.image);
    }
    void encodePng(out[0]);
    return out;
  } finally {
    up.dispose();
  }
}

export async function inAPage(gpu: GPU, url: string): Promise<BrowserUpscaler> {
  return createPageUpscaler({ model: url, device: gpu, steps: 10 });
}

export async function lowLevel(ctx: GpuContext, up: NodeUpscaler): Promise<number> {
  const params: UNetParams = uploadUNetParams(ctx, up.model);
  const net = await UNet.build(ctx, up.model, { batch: 1, height: 32, width: 32, splitInput: true, params });
  // the conv kernel this context runs: one of the package's kernels, from the engine options on the context
  const k: kernels.ConvKernel = ctx.options.convKernel;
  if (!kernels.CONV_KERNELS.includes(k)) throw new Error(`unexpected conv kernel ${k}`);
  void Sampler;
  net.destroy();
  params.destroy();
  return params.bytes;
}

// training from the core entry: one step on crops of the given images, and the state a checkpoint would hold
export async function trainOneStep(ctx: GpuContext, up: NodeUpscaler, images: PixelImage[]): Promise<TrainerState> {
  const trainer = await Trainer.create(ctx, up.model, {
    batch: 1,
    patch: 32,
    scale: 4,
    lr: 1e-4,
    schedule: parseSchedule('linear:2000:1e-6:0.01'),
    crops: photoCrops(images, 32),
  });
  try {
    const { loss } = await trainer.step();
    if (!Number.isFinite(loss)) throw new Error(`loss ${loss}`);
    return await trainer.state({ moments: false });
  } finally {
    trainer.destroy();
  }
}
