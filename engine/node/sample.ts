// `sr3 sample`: the sampler driven from a safetensors file of noise, for checking against PyTorch step by step.
import { parseArgs } from 'node:util';
import { SAMPLERS, Sampler, type SamplerKind } from '../sampler.ts';
import { makeSchedule } from '../schedule.ts';
import { f32Entry, toFloat32, writeSafetensors, type TensorEntry } from '../../weights-format/index.ts';
import { writeFileAtomic } from '../../weights-format/node.ts';
import { openTensorFile } from './tensor-file.ts';
import { openDevice } from './device.ts';
import { openModel } from './model.ts';

const HELP = `usage: sr3 sample --model <file> --in <in.safetensors> --out <out.safetensors>
                  [--sampler reference|paper|ddim] [--eta E] --schedule kind:steps:start:end [--config opts.json]

Runs the sampler from given noise and writes the state after every step.
  --in        cond [B, C, H, W] (the upscaled condition), y_T [B, C, H, W], and z.0 ... z.{T-1} (per-step noise)
  --out       gets y.<i> [B, C, H, W], the state after step i, for i = T-1 ... 0
  --schedule  e.g. linear:12:1e-4:0.3 (kinds: linear, quad, cosine, warmup10, warmup50, const, jsd)`;

export async function sampleCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string', short: 'o' },
      sampler: { type: 'string', default: 'reference' },
      schedule: { type: 'string' },
      eta: { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const k of ['model', 'in', 'out', 'schedule'] as const)
    if (!values[k]) throw new Error(`--${k} is required\n\n${HELP}`);
  const kind = values.sampler as SamplerKind;
  if (!SAMPLERS.includes(kind))
    throw new Error(`--sampler must be one of ${SAMPLERS.join(', ')}, got '${values.sampler}'`);
  const eta = values.eta === undefined ? 0 : Number(values.eta);
  if (!Number.isFinite(eta) || eta < 0) throw new Error(`--eta must be a number >= 0, got '${values.eta}'`);
  const schedule = makeSchedule(values.schedule!);
  const T = schedule.betas.length;
  const model = await openModel(values.model!, { config: values.config });
  const inFile = values.in!;
  const input = await openTensorFile(inFile, 'cond, y_T and z.0 ... z.{T-1}');
  const cond = input.get('cond');
  if (cond.shape.length !== 4) throw new Error(`${inFile}: cond has shape [${cond.shape}], expected [B, C, H, W]`);
  const [B, C, H, W] = cond.shape;
  const cfg = model.config;
  if (C !== cfg.in_channel - cfg.out_channel || C < 1) {
    throw new Error(
      `${inFile}: cond has ${C} channels; this model takes a ${cfg.in_channel - cfg.out_channel}-channel condition`,
    );
  }
  const same = (name: string) => {
    const e = input.get(name);
    if (e.shape.join() !== [B, cfg.out_channel, H, W].join()) {
      throw new Error(`${inFile}: ${name} has shape [${e.shape}], expected [${[B, cfg.out_channel, H, W]}]`);
    }
    return toFloat32(e);
  };
  const yT = same('y_T');
  const zs = Array.from({ length: T }, (_, t) => same(`z.${t}`));
  const ctx = await openDevice();
  try {
    const s = await Sampler.build(ctx, model, {
      batch: B,
      height: H,
      width: W,
      sampler: { kind, schedule, eta },
      noise: 'provided',
    });
    s.setCondition(toFloat32(cond));
    s.setStart(yT);
    s.setNoise(zs);
    const out: [string, TensorEntry][] = [];
    const t0 = performance.now();
    await s.run({
      keepStart: true,
      onStep: async (t) => {
        out.push([`y.${t}`, f32Entry([B, cfg.out_channel, H, W], await s.readY())]);
      },
    });
    const ms = performance.now() - t0;
    await writeFileAtomic(values.out!, writeSafetensors(out, { sampler: kind, schedule: values.schedule! }));
    console.error(
      `sampled ${T} steps (${kind}) of [${B}, ${cfg.out_channel}, ${H}, ${W}] in ${(ms / 1000).toFixed(2)} s on ${ctx.adapter.description}; wrote ${values.out}`,
    );
    s.destroy();
    return 0;
  } finally {
    ctx.destroy();
  }
}
