// `sr3 upscale`'s argument checks without a model or a device: every number from a flag checked for range and
// finiteness (quoted as typed), and output names that never collide nor overwrite an input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join, resolve } from 'node:path';
import {
  checkOutputSize,
  inputLimits,
  jobSampling,
  parseUpscaleArgs,
  planOutputs,
} from '../engine/node/upscale-args.ts';
import { MAX_PNG_SIDE } from '../engine/node/png.ts';

const base = ['in.png', '-o', 'out.png'];
const refused = (extra: string[], msg: RegExp) => {
  try {
    parseUpscaleArgs([...base, ...extra]);
  } catch (e) {
    assert.match((e as Error).message, msg, extra.join(' '));
    return;
  }
  assert.unreachable(`accepted ${extra.join(' ')}`);
};

test('defaults, and good values come through as numbers', () => {
  const a = parseUpscaleArgs([...base])!;
  assert.equal(
    [a.seed, a.samples, a.sampler, a.consistency, a.tile, a.overlap, a.eta],
    [0, 1, 'reference', true, undefined, undefined, undefined],
  );
  assert.is(a.schedule, 'linear:6:1e-4:0.6667');
  const b = parseUpscaleArgs([
    ...base,
    '--sampler',
    'ddim',
    '--eta',
    '0.5',
    '--seed',
    '9007199254740991',
    '--steps',
    '7',
    '--tile',
    '64',
    '--overlap',
    '16',
    '--samples',
    '3',
  ])!;
  assert.equal([b.eta, b.seed, b.tile, b.overlap, b.samples], [0.5, 9007199254740991, 64, 16, 3]);
  assert.is(b.schedule, 'linear:7:1e-4:0.5714');
  assert.is(parseUpscaleArgs([...base, '--help']), undefined);
});

test('eta: finite, from 0 to 1, and only for DDIM', () => {
  for (const v of ['Infinity', '1e308', '-1', 'NaN', '', 'abc', '1.5'])
    refused(['--sampler', 'ddim', `--eta=${v}`], new RegExp(`--eta must be a number from 0 .* to 1 .*got '${v}'`));
  refused(['--eta', '0.5'], /--eta is DDIM's: it needs --sampler ddim/);
});

test('seed above 2^53-1, negative or fractional is refused quoting the text as typed', () => {
  refused(
    ['--seed', '9007199254740993'],
    /--seed must be an integer from 0 to 9007199254740991, got '9007199254740993'/,
  );
  refused(['--seed', '18446744073709551616'], /got '18446744073709551616'/);
  refused(['--seed=-1'], /got '-1'/);
  refused(['--seed', '1.5'], /got '1.5'/);
});

test('steps, schedule, samples, tile and overlap: range-checked before any work', () => {
  refused(['--steps', '1e9'], /--steps must be an integer from 2 to 1000000, got '1e9'/);
  refused(['--steps', '1'], /--steps must be an integer from 2/);
  refused(['--steps', 'Infinity'], /--steps must be an integer/);
  refused(['--schedule', 'linear:1e9:1e-4:0.1'], /--schedule 'linear:1e9:1e-4:0.1': steps must be a positive integer/);
  refused(['--schedule', 'wobbly:10'], /--schedule 'wobbly:10': unknown kind/);
  refused(['--schedule', 'linear:10:0.5:2'], /end must be in \(0, 1\]/);
  refused(['--schedule', 'linear:1:1e-4:0.1'], /at least 2 steps/);
  refused(['--samples', '0'], /--samples must be an integer from 1 to 64, got '0'/);
  refused(['--samples', '1000'], /--samples must be an integer from 1 to 64/);
  refused(['--tile', '4'], /--tile must be an integer from 8 to 16384, got '4'/);
  refused(['--tile', '1e9'], /--tile must be an integer from 8 to 16384, got '1e9'/);
  refused(['--overlap=-2'], /--overlap must be an integer from 0/);
  refused(['--tile', '32', '--overlap', '32'], /--overlap 32 must be smaller than --tile 32/);
});

test("a queued job's sampling options get the flags' rules: defaults, and the same refusals without the dashes", () => {
  assert.equal(jobSampling({}), { schedule: 'linear:6:1e-4:0.6667', sampler: 'reference', eta: undefined, seed: 0 });
  assert.equal(jobSampling({ sampler: 'ddim', eta: 0.25, steps: 5, seed: 9007199254740991 }), {
    schedule: 'linear:5:1e-4:0.8',
    sampler: 'ddim',
    eta: 0.25,
    seed: 9007199254740991,
  });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ sampler: 'ddim', eta: Number.POSITIVE_INFINITY }, /^eta must be a number from 0 .* to 1 .*got 'Infinity'/],
    [{ sampler: 'ddim', eta: 1e308 }, /^eta must be a number from 0 .*got '1e\+308'/],
    [{ eta: 0.5 }, /^eta is DDIM's: it needs sampler ddim/],
    [{ seed: 2 ** 60 }, /^seed must be an integer from 0 to 9007199254740991, got '1152921504606847000'/],
    [{ seed: -1 }, /^seed must be an integer from 0/],
    [{ steps: 1e9 }, /^steps must be an integer from 2 to 1000000, got '1000000000'/],
    [{ steps: 2.5 }, /^steps must be an integer/],
    [{ schedule: 'wobbly:10' }, /^schedule 'wobbly:10': unknown kind/],
    [{ sampler: 'magic' }, /^sampler must be one of/],
    [{ steps: { n: 4 } }, /^steps must be given as a number or a string, got object/],
  ];
  for (const [d, want] of cases) assert.throws(() => jobSampling(d), want, JSON.stringify(d));
});

test("an output over the PNG writer's limits is refused from the input's size, with the largest input that fits", () => {
  assert.equal(inputLimits(4), { maxSide: MAX_PNG_SIDE / 4, maxPixels: (64 * 1024 * 1024) / 16 });
  checkOutputSize('ok.png', 4096, 16, 4);
  assert.throws(
    () => checkOutputSize('wide.png', 4200, 1, 4),
    /wide.png: 4200x1 would upscale to 16800x4, over the 16384 pixels a side.*up to 4096 pixels a side/,
  );
  assert.throws(() => checkOutputSize('big.png', 4000, 4000, 4), /over the .* 67108864 pixels/);
});

test('inputs with one name get distinct outputs, a repeated input runs once, and nothing overwrites an input', () => {
  const o = { out: 'dir', toDir: true, samples: 1, scale: 4 };
  const p = planOutputs(['a/x.png', 'b/x.jpg', 'c/X.png', 'x-2.png'], o);
  assert.equal(
    p.jobs.map((j) => j.targets),
    [
      [join('dir', 'x_sr4x.png')],
      [join('dir', 'x-3_sr4x.png')],
      [join('dir', 'X-4_sr4x.png')],
      [join('dir', 'x-2_sr4x.png')],
    ],
  );
  assert.is(p.notes.length, 2);
  assert.match(p.notes[0], /a\/x.png and b\/x.jpg have the same name; b\/x.jpg's output is named x-3_sr4x.png/);
  const twice = planOutputs(['a/x.png', './a/x.png'], o);
  assert.is(twice.jobs.length, 1);
  assert.match(twice.notes[0], /listed more than once; it is upscaled once/);
  const s = planOutputs(['a/x.png', 'b/x.png'], { ...o, samples: 2 });
  assert.equal(s.jobs[1].targets, [join('dir', 'x-2_sr4x_s0.png'), join('dir', 'x-2_sr4x_s1.png')]);
  assert.throws(
    () => planOutputs(['in.png'], { ...o, out: 'in.png', toDir: false }),
    /in.png: this output would overwrite the input in.png; choose another -o/,
  );
  assert.throws(
    () => planOutputs([resolve('in.png')], { ...o, out: './in.png', toDir: false }),
    /would overwrite the input/,
  );
  assert.throws(
    () => planOutputs(['d/q.png', 'd/q_sr4x.png'], { ...o, out: 'd' }),
    /d\/q_sr4x.png: this output would overwrite the input d\/q_sr4x.png/,
  );
});

test.run();
