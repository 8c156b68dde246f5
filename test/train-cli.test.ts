// `sr3 train` end to end on the software device: a tiny model on small synthetic photos lowers its loss, writes the
// model (loadable, with its config and schedule), the optimizer state, the loss log and plot, and resumes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { encodePng } from '../engine/node/png.ts';
import { loadModel, readSafetensors } from '../weights-format/index.ts';
import { modelTarget } from '../engine/upscale.ts';

const dir = mkdtempSync(join(tmpdir(), 'sr3-train-'));
const data = join(dir, 'photos');
mkdirSync(data);
// smooth colour fields with edges: something a model can learn quickly
for (let k = 0; k < 3; k++) {
  const W = 48;
  const px = new Uint8Array(W * W * 3);
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < 3; c++)
        px[(y * W + x) * 3 + c] = Math.round(
          127 + 100 * Math.sin((x * (c + 1) + y * (k + 1)) / 9) * (x > 20 + k ? 1 : 0.4),
        );
  writeFileSync(join(data, `p${k}.png`), encodePng({ width: W, height: W, channels: 3, bitDepth: 8, data: px }));
}

const readLog = (f: string) =>
  readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number; loss: number });

test('a tiny model trains, lowers its loss, and saves everything', async () => {
  const out = join(dir, 'tiny.safetensors');
  const r = await runCli([
    'train',
    '--data',
    data,
    '--out',
    out,
    '--config',
    'tiny',
    '--patch',
    '16',
    '--batch',
    '4',
    '--steps',
    '24',
    '--lr',
    '1e-3',
    '--reduction',
    'mean',
    '--quiet',
  ]);
  assert.is(r.code, 0, r.out);
  const log = readLog(`${out}.log.jsonl`);
  assert.is(log.length, 24);
  const mean = (xs: { loss: number }[]) => xs.reduce((s, p) => s + p.loss, 0) / xs.length;
  const first = mean(log.slice(0, 6));
  const last = mean(log.slice(-6));
  console.log(`    mean L1 loss, first 6 steps ${first.toFixed(4)}, last 6 steps ${last.toFixed(4)}`);
  assert.ok(last < 0.9 * first, `loss did not fall: ${first} -> ${last}`);
  const m = loadModel(new Uint8Array(readFileSync(out)));
  assert.is(m.config.inner_channel, 16);
  assert.is(m.schedule?.n_timestep, 2000);
  assert.is(m.condition?.scale, 4);
  assert.ok(existsSync(`${out}.state.safetensors`));
  assert.ok(existsSync(`${out}.loss.png`));
});

test('--resume continues the step count and the log', async () => {
  const out = join(dir, 'tiny.safetensors');
  const r = await runCli([
    'train',
    '--data',
    data,
    '--out',
    out,
    '--resume',
    out,
    '--patch',
    '16',
    '--batch',
    '4',
    '--steps',
    '3',
    '--lr',
    '1e-3',
    '--reduction',
    'mean',
    '--clip',
    '1',
    '--ema',
    '0.9',
    '--warmup',
    '2',
    '--quiet',
  ]);
  assert.is(r.code, 0, r.out);
  const log = readLog(`${out}.log.jsonl`);
  assert.is(log.length, 27);
  assert.is(log[26].step, 27);
});

test('the regression baseline trains with MSE and upscales in one pass', async () => {
  const out = join(dir, 'regress.safetensors');
  const r = await runCli([
    'train',
    '--data',
    data,
    '--out',
    out,
    '--config',
    'tiny',
    '--objective',
    'regression',
    '--patch',
    '16',
    '--batch',
    '4',
    '--steps',
    '16',
    '--lr',
    '1e-3',
    '--reduction',
    'mean',
    '--quiet',
  ]);
  assert.is(r.code, 0, r.out);
  const log = readLog(`${out}.log.jsonl`);
  const first = log.slice(0, 4).reduce((s, p) => s + p.loss, 0) / 4;
  const last = log.slice(-4).reduce((s, p) => s + p.loss, 0) / 4;
  console.log(`    regression MSE, first 4 steps ${first.toFixed(4)}, last 4 steps ${last.toFixed(4)}`);
  assert.ok(last < 0.8 * first, `MSE did not fall: ${first} -> ${last}`);
  assert.match(loadModel(new Uint8Array(readFileSync(out))).metadata.training, /"objective":"regression"/);
  const png = join(dir, 'regress.png');
  const a = await runCli(['upscale', join(data, 'p0.png'), '-o', png, '--model', out, '--quiet']);
  assert.is(a.code, 0, a.out);
  assert.ok(existsSync(png));
  const again = await runCli([
    'train',
    '--data',
    data,
    '--out',
    out,
    '--resume',
    out,
    '--objective',
    'diffusion',
    '--steps',
    '1',
    '--quiet',
  ]);
  assert.is(again.code, 1);
  assert.match(again.out, /trained with --objective regression/);
});

test('the residual target with a compact state: recorded, f16 without moments, and resumed from it', async () => {
  const out = join(dir, 'residual.safetensors');
  const common = [
    '--data',
    data,
    '--out',
    out,
    '--patch',
    '16',
    '--batch',
    '4',
    '--lr',
    '1e-3',
    '--reduction',
    'mean',
    '--ema',
    '0.9',
    '--state-dtype',
    'f16',
    '--moments',
    'drop',
    '--quiet',
  ];
  const r = await runCli([
    'train',
    ...common,
    '--config',
    'tiny',
    '--target',
    'residual',
    '--blur',
    '0.5:0.4:0.6',
    '--steps',
    '6',
  ]);
  assert.is(r.code, 0, r.out);
  const m = loadModel(new Uint8Array(readFileSync(out)));
  assert.is(modelTarget(m), 'residual');
  assert.is(m.dtype, 'F16');
  const st = readSafetensors(new Uint8Array(readFileSync(`${out}.state.safetensors`)));
  assert.equal([...st.tensors.keys()].sort(), ['ema', 'params']);
  assert.is(st.tensors.get('params')!.dtype, 'F16');
  assert.is(st.metadata.step, '6');
  const again = await runCli(['train', ...common, '--resume', out, '--steps', '3', '--warmup', '2']);
  assert.is(again.code, 0, again.out);
  assert.match(again.out, /no optimizer moments: a fresh Adam from step 6 with 2 warm-up steps/);
  const log = readLog(`${out}.log.jsonl`);
  assert.equal(
    log.map((l) => l.step),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.ok(log.every((l) => Number.isFinite(l.loss)));
  assert.is(modelTarget(loadModel(new Uint8Array(readFileSync(out)))), 'residual');
  const wrong = await runCli(['train', ...common, '--resume', out, '--target', 'hr', '--steps', '1']);
  assert.is(wrong.code, 1);
  assert.match(wrong.out, /trained with --target residual/);
});

test('bad requests are refused before training', async () => {
  const cases: [string[], RegExp][] = [
    [
      ['train', '--data', join(dir, 'nope'), '--out', join(dir, 'x.safetensors'), '--config', 'tiny'],
      /nope: no such folder of training images/,
    ],
    [['train', '--data', data, '--out', join(dir, 'x.safetensors'), '--config', 'huge'], /neither a preset/],
    [
      ['train', '--data', data, '--out', join(dir, 'x.safetensors'), '--config', 'tiny', '--patch', '18'],
      /multiple of 4/,
    ],
    [
      ['train', '--data', data, '--out', join(dir, 'x.safetensors'), '--config', 'tiny', '--patch', '64'],
      /at least 64x64/,
    ],
  ];
  for (const [argv, msg] of cases) {
    const r = await runCli([...argv, '--quiet']);
    assert.is(r.code, 1, argv.join(' '));
    assert.match(r.out, msg);
  }
  assert.not.ok(existsSync(join(dir, 'x.safetensors')));
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
