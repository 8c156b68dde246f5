// `sr3 forward` end to end: the golden input file in, eps out, compared with the reference's eps.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { f32Entry, readSafetensors, toFloat32, writeSafetensors } from '../weights-format/index.ts';
import { relErr } from './helpers/device.ts';
import { FIXTURES, goldenTensors } from './helpers/golden.ts';

const dir = mkdtempSync(join(tmpdir(), 'sr3-forward-'));

for (const name of ['tiny', 'groups32']) {
  test(`sr3 forward reproduces the golden ${name} eps from the CLI`, async () => {
    const g = join(FIXTURES, 'golden', name);
    const out = join(dir, `${name}.safetensors`);
    const r = await runCli([
      'forward',
      '--model',
      join(g, 'model_gen.pth'),
      '--config',
      join(g, 'config.json'),
      '--in',
      join(g, 'forward.safetensors'),
      '--out',
      out,
    ]);
    assert.is(r.code, 0, r.out);
    const eps = toFloat32(readSafetensors(new Uint8Array(readFileSync(out))).tensors.get('eps')!);
    const err = relErr(eps, goldenTensors(name, 'forward.safetensors').get('eps'));
    assert.ok(err <= 1e-4, `eps error ${err}`);
  });
}

test('sr3 sample reproduces the golden tiny paper-sampler steps from the CLI', async () => {
  const g = join(FIXTURES, 'golden', 'tiny');
  const out = join(dir, 'sample.safetensors');
  const r = await runCli([
    'sample',
    '--model',
    join(g, 'model_gen.pth'),
    '--config',
    join(g, 'config.json'),
    '--in',
    join(g, 'sample.safetensors'),
    '--out',
    out,
    '--sampler',
    'paper',
    '--schedule',
    'linear:12:1e-4:0.3',
  ]);
  assert.is(r.code, 0, r.out);
  const got = readSafetensors(new Uint8Array(readFileSync(out))).tensors;
  const want = goldenTensors('tiny', 'sample.safetensors');
  for (let t = 0; t < 12; t++) {
    const err = relErr(toFloat32(got.get(`y.${t}`)!), want.get(`paper.y.${t}`));
    assert.ok(err <= 1e-3, `y.${t}: ${err}`);
  }
});

test('sr3 grad reproduces the golden tiny L1 loss, gradients and two Adam steps from the CLI', async () => {
  const g = join(FIXTURES, 'golden', 'tiny');
  const out = join(dir, 'grad.safetensors');
  const r = await runCli([
    'grad',
    '--model',
    join(g, 'model_gen.pth'),
    '--config',
    join(g, 'config.json'),
    '--in',
    join(g, 'train.safetensors'),
    '--loss',
    'l1',
    '--adam-steps',
    '2',
    '--out',
    out,
  ]);
  assert.is(r.code, 0, r.out);
  const got = readSafetensors(new Uint8Array(readFileSync(out))).tensors;
  const want = goldenTensors('tiny', 'train.safetensors');
  const loss = toFloat32(got.get('loss')!)[0];
  assert.ok(Math.abs(loss - want.get('l1.loss')[0]) <= 1e-4 * Math.abs(loss));
  let n = 0;
  for (const [key, t] of got) {
    if (key.startsWith('grad.')) {
      assert.ok(relErr(toFloat32(t), want.get(`l1.grad.denoise_fn.${key.slice(5)}`)) <= 1e-3, key);
      n++;
    } else if (key.startsWith('adam')) {
      const [k, ...rest] = key.split('.');
      const ref = want.get(`${k}.denoise_fn.${rest.join('.')}`);
      const v = toFloat32(t);
      for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i] - ref[i]) <= 1e-6, `${key}[${i}]`);
    }
  }
  assert.is(n, 162);
});

test('sr3 forward refuses an input that does not fit the model, and writes nothing', async () => {
  const g = join(FIXTURES, 'golden', 'tiny');
  const bad = join(dir, 'bad-in.safetensors');
  writeFileSync(
    bad,
    writeSafetensors([
      ['x_in', f32Entry([1, 4, 32, 32], new Float32Array(4 * 32 * 32))],
      ['noise_level', f32Entry([1, 1], new Float32Array([0.5]))],
    ]),
  );
  const out = join(dir, 'never.safetensors');
  const r = await runCli([
    'forward',
    '--model',
    join(g, 'model_gen.pth'),
    '--config',
    join(g, 'config.json'),
    '--in',
    bad,
    '--out',
    out,
  ]);
  assert.is(r.code, 1);
  assert.match(r.out, /x_in has 4 channels, but this model takes 6/);
  assert.not.ok(existsSync(out));
  const odd = join(dir, 'odd-in.safetensors');
  writeFileSync(
    odd,
    writeSafetensors([
      ['x_in', f32Entry([1, 6, 30, 32], new Float32Array(6 * 30 * 32))],
      ['noise_level', f32Entry([1, 1], new Float32Array([0.5]))],
    ]),
  );
  const r2 = await runCli([
    'forward',
    '--model',
    join(g, 'model_gen.pth'),
    '--config',
    join(g, 'config.json'),
    '--in',
    odd,
    '--out',
    out,
  ]);
  assert.is(r2.code, 1);
  assert.match(r2.out, /multiples of 4/);
  assert.not.ok(existsSync(out));
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
