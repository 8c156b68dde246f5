// `sr3 grad`: the loss, every parameter's gradient, and optionally the weights after k Adam steps on one batch, for
// checking training against PyTorch.
import { parseArgs } from 'node:util';
import { TrainGraph } from '../train.ts';
import { f32Entry, toFloat32, writeSafetensors, type TensorEntry } from '../../weights-format/index.ts';
import { writeFileAtomic } from '../../weights-format/node.ts';
import { openTensorFile } from './tensor-file.ts';
import { openDevice } from './device.ts';
import { openModel } from './model.ts';

const HELP = `usage: sr3 grad --model <file> --in <in.safetensors> --loss l1|l2 --out <out.safetensors>
                [--reduction sum|mean] [--adam-steps N --lr 1e-4] [--config opts.json]

  --in   hr [B, C, H, W] (y0), sr [B, C, H, W] (the condition), sqrt_gamma [B, 1], noise [B, C, H, W]
  --out  gets loss [1], grad.<name> for every parameter, and with --adam-steps N the weights adam<k>.<name> after k
         Adam steps on the same batch (k = 1..N; betas 0.9/0.999, eps 1e-8)`;

export async function gradCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      in: { type: 'string' },
      out: { type: 'string', short: 'o' },
      loss: { type: 'string', default: 'l1' },
      reduction: { type: 'string', default: 'sum' },
      'adam-steps': { type: 'string', default: '0' },
      lr: { type: 'string', default: '1e-4' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const k of ['model', 'in', 'out'] as const) if (!values[k]) throw new Error(`--${k} is required\n\n${HELP}`);
  const loss = values.loss as 'l1' | 'l2';
  if (loss !== 'l1' && loss !== 'l2') throw new Error(`--loss must be l1 or l2, got '${values.loss}'`);
  const reduction = values.reduction as 'sum' | 'mean';
  if (reduction !== 'sum' && reduction !== 'mean')
    throw new Error(`--reduction must be sum or mean, got '${values.reduction}'`);
  const steps = Number(values['adam-steps']);
  if (!Number.isInteger(steps) || steps < 0)
    throw new Error(`--adam-steps must be a non-negative integer, got '${values['adam-steps']}'`);
  const lr = Number(values.lr);
  if (!(lr > 0)) throw new Error(`--lr must be a positive number, got '${values.lr}'`);
  const model = await openModel(values.model!, { config: values.config });
  const inFile = values.in!;
  const input = await openTensorFile(inFile, 'hr, sr, sqrt_gamma and noise');
  const hr = input.get('hr');
  if (hr.shape.length !== 4) throw new Error(`${inFile}: hr has shape [${hr.shape}], expected [B, C, H, W]`);
  const [B, C, H, W] = hr.shape;
  const cfg = model.config;
  if (C !== cfg.out_channel) throw new Error(`${inFile}: hr has ${C} channels; this model makes ${cfg.out_channel}`);
  const cond = input.get('sr');
  if (cond.shape.join() !== [B, cfg.in_channel - cfg.out_channel, H, W].join()) {
    throw new Error(
      `${inFile}: sr has shape [${cond.shape}], expected [${[B, cfg.in_channel - cfg.out_channel, H, W]}]`,
    );
  }
  const noise = input.get('noise');
  if (noise.shape.join() !== hr.shape.join())
    throw new Error(`${inFile}: noise has shape [${noise.shape}], expected [${hr.shape}]`);
  const sg = toFloat32(input.get('sqrt_gamma'));
  if (sg.length !== B) throw new Error(`${inFile}: sqrt_gamma has ${sg.length} values, expected ${B}`);
  const ctx = await openDevice();
  try {
    const t0 = performance.now();
    const tg = await TrainGraph.build(ctx, model, {
      batch: B,
      height: H,
      width: W,
      loss,
      reduction,
      adam: steps ? { lr } : undefined,
    });
    tg.setBatch({ hr: toFloat32(hr), cond: toFloat32(cond), sqrtGamma: sg, noise: toFloat32(noise) });
    const value = await tg.run(false);
    const out: [string, TensorEntry][] = [['loss', f32Entry([1], new Float32Array([value]))]];
    const shapes = new Map(tg.plan.params.order);
    for (const [name, g] of tg.byName(await tg.readGrads()))
      out.push([`grad.${name}`, f32Entry(shapes.get(name)!, g.slice())]);
    for (let k = 1; k <= steps; k++) {
      await tg.run(true);
      for (const [name, p] of tg.byName(await tg.readParams()))
        out.push([`adam${k}.${name}`, f32Entry(shapes.get(name)!, p.slice())]);
    }
    await writeFileAtomic(values.out!, writeSafetensors(out, { loss, reduction }));
    console.error(
      `${loss} loss ${value} over [${B}, ${C}, ${H}, ${W}], ${shapes.size} gradients${steps ? `, ${steps} Adam steps` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${values.out}`,
    );
    tg.destroy();
    return 0;
  } finally {
    ctx.destroy();
  }
}
