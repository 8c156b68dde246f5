// `sr3 forward`: one U-Net evaluation from a safetensors input, for checking against PyTorch.
import { parseArgs } from 'node:util';
import { UNet } from '../unet.ts';
import { f32Entry, toFloat32, writeSafetensors } from '../../weights-format/index.ts';
import { writeFileAtomic } from '../../weights-format/node.ts';
import { openTensorFile } from './tensor-file.ts';
import { openDevice } from './device.ts';
import { openModel } from './model.ts';

const HELP = `usage: sr3 forward --model <file> --in <in.safetensors> --out <out.safetensors> [--repeat N] [--config opts.json]

Evaluates eps = UNet(x_in, noise_level) once.
  --model    an sr3-wgsl model file, or a reference checkpoint (.pth; --config gives its options file)
  --in       safetensors with x_in [B, in_channel, H, W] and noise_level [B, 1] (float32)
  --out      safetensors to write, with eps [B, out_channel, H, W] (float32)
  --repeat   run N more forward passes and print the median time of one`;

export async function forwardCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string', short: 'o' },
      repeat: { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const k of ['model', 'in', 'out'] as const) {
    if (!values[k]) throw new Error(`--${k} is required\n\n${HELP}`);
  }
  const repeat = values.repeat === undefined ? 0 : Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 0)
    throw new Error(`--repeat must be a non-negative integer, got '${values.repeat}'`);
  const model = await openModel(values.model!, { config: values.config });
  const inFile = values.in!;
  const input = await openTensorFile(inFile, 'x_in [B, in_channel, H, W] and noise_level [B, 1]');
  const xe = input.get('x_in', 4);
  const ne = input.get('noise_level');
  const [B, C, H, W] = xe.shape;
  const cfg = model.config;
  if (C !== cfg.in_channel) {
    throw new Error(
      `${inFile}: x_in has ${C} channels, but this model takes ${cfg.in_channel} (condition + noisy image)`,
    );
  }
  const nl = toFloat32(ne);
  if (nl.length !== B) throw new Error(`${inFile}: noise_level has shape [${ne.shape}], expected [${B}, 1]`);
  UNet.checkShape(cfg, B, H, W);

  const ctx = await openDevice();
  try {
    const t0 = performance.now();
    const net = await UNet.build(ctx, model, { batch: B, height: H, width: W });
    const t1 = performance.now();
    const eps = await net.forward(toFloat32(xe), nl);
    const t2 = performance.now();
    const times: number[] = [];
    for (let i = 0; i < repeat; i++) {
      const s = performance.now();
      net.run();
      await ctx.sync();
      times.push(performance.now() - s);
    }
    await writeFileAtomic(values.out!, writeSafetensors([['eps', f32Entry([B, cfg.out_channel, H, W], eps)]]));
    console.error(
      `forward [${B}, ${C}, ${H}, ${W}] on ${ctx.adapter.description}: build ${(t1 - t0).toFixed(0)} ms, ` +
        `first pass ${(t2 - t1).toFixed(0)} ms` +
        (times.length ? `, median of ${times.length}: ${median(times).toFixed(1)} ms` : '') +
        `; ${net.describeMemory()}`,
    );
    console.error(`wrote eps [${B}, ${cfg.out_channel}, ${H}, ${W}] to ${values.out}`);
    net.destroy();
    return 0;
  } finally {
    ctx.destroy();
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
