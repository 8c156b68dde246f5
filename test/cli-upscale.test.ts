// `sr3 upscale` and `sr3 eval` end to end on small images with the golden tiny model (fast on the software device):
// colour types in and out, reproducibility, and bad input refused before any work, with nothing written.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { encodePng, readPng, type Image } from '../engine/node/png.ts';
import { FIXTURES } from './helpers/golden.ts';
import { convertCheckpoint, readSafetensors } from '../weights-format/index.ts';
import { nodeInflateRaw } from '../weights-format/node.ts';

const dir = mkdtempSync(join(tmpdir(), 'sr3-upscale-'));
const model = [
  '--model',
  join(FIXTURES, 'golden', 'tiny', 'model_gen.pth'),
  '--config',
  join(FIXTURES, 'golden', 'tiny', 'config.json'),
];

function image(width: number, height: number, channels: 1 | 2 | 3 | 4, bitDepth: 8 | 16): Image {
  const max = bitDepth === 16 ? 65535 : 255;
  const n = width * height * channels;
  const data = bitDepth === 16 ? new Uint16Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.round(((Math.sin(i * 0.7) + 1) / 2) * max);
  return { width, height, channels, bitDepth, data };
}
/** Writes an image as PNG, or raw bytes or text as they are (bad inputs), and returns the path. */
const save = (name: string, img: Image | Uint8Array | string) => {
  const f = join(dir, name);
  writeFileSync(f, typeof img === 'string' || img instanceof Uint8Array ? img : encodePng(img));
  return f;
};

for (const [channels, bits] of [
  [3, 8],
  [4, 16],
  [1, 8],
  [2, 8],
] as const) {
  test(`a ${channels}-channel ${bits}-bit PNG comes back 4x larger with the same colour type and depth`, async () => {
    const input = save(`in${channels}-${bits}.png`, image(6, 5, channels, bits));
    const out = join(dir, `out${channels}-${bits}.png`);
    const r = await runCli(['upscale', input, '-o', out, '--steps', '3', '--quiet', ...model]);
    assert.is(r.code, 0, r.out);
    const img = await readPng(out);
    assert.equal([img.width, img.height, img.channels, img.bitDepth], [24, 20, channels, bits]);
  });
}

test('same seed, same PNG; several samples and inputs go to a folder', async () => {
  const input = save('seed.png', image(8, 8, 3, 8));
  const a = join(dir, 'a.png');
  const b = join(dir, 'b.png');
  await runCli(['upscale', input, '-o', a, '--steps', '3', '--seed', '5', '--quiet', ...model]);
  await runCli(['upscale', input, '-o', b, '--steps', '3', '--seed', '5', '--quiet', ...model]);
  assert.equal(Array.from((await readPng(a)).data), Array.from((await readPng(b)).data));
  const folder = join(dir, 'many');
  mkdirSync(folder);
  const r = await runCli([
    'upscale',
    input,
    save('second.png', image(4, 4, 3, 8)),
    '-o',
    folder,
    '--steps',
    '2',
    '--samples',
    '2',
    '--quiet',
    ...model,
  ]);
  assert.is(r.code, 0, r.out);
  assert.equal(readdirSync(folder).sort(), [
    'second_sr4x_s0.png',
    'second_sr4x_s1.png',
    'seed_sr4x_s0.png',
    'seed_sr4x_s1.png',
  ]);
});

test('a folder runs through one upscaler: its PNGs written as single runs write them, then a summary line', async () => {
  const src = join(dir, 'folder-in');
  const dst = join(dir, 'folder-out');
  mkdirSync(src);
  mkdirSync(dst);
  writeFileSync(join(src, 'a.png'), encodePng(image(6, 5, 3, 8)));
  writeFileSync(join(src, 'b.png'), encodePng(image(4, 7, 3, 8)));
  writeFileSync(join(src, 'notes.txt'), 'not an image: skipped');
  const r = await runCli(['upscale', src, '-o', dst, '--steps', '2', '--seed', '3', ...model]);
  assert.is(r.code, 0, r.out);
  assert.equal(readdirSync(dst).sort(), ['a_sr4x.png', 'b_sr4x.png']);
  assert.match(r.out, /2 images in [\d.]+ s \([\d.]+ images\/s, one upscaler\)/);
  for (const name of ['a', 'b']) {
    const single = join(dir, `single-${name}.png`);
    assert.is(
      (
        await runCli([
          'upscale',
          join(src, `${name}.png`),
          '-o',
          single,
          '--steps',
          '2',
          '--seed',
          '3',
          '--quiet',
          ...model,
        ])
      ).code,
      0,
    );
    assert.equal(
      Array.from((await readPng(join(dst, `${name}_sr4x.png`))).data),
      Array.from((await readPng(single)).data),
      name,
    );
  }
  const empty = join(dir, 'empty-folder');
  mkdirSync(empty);
  const e = await runCli(['upscale', empty, '-o', dst, '--quiet', ...model]);
  assert.is(e.code, 1);
  assert.match(e.out, /no \.png, \.jpg or \.jpeg files/);
});

test('bad inputs and outputs are refused with a clear message and nothing is written', async () => {
  const good = save('good.png', image(4, 4, 3, 8));
  const out = join(dir, 'never.png');
  const cases: [string[], RegExp][] = [
    [['upscale', join(dir, 'missing.png'), '-o', out], /no such file/],
    [['upscale', save('text.png', 'hello, not an image'), '-o', out], /not a PNG or JPEG/],
    [['upscale', save('trunc.png', encodePng(image(16, 16, 3, 8)).subarray(0, 60)), '-o', out], /truncated|corrupt/i],
    [['upscale', good, '-o', join(dir, 'no-such-dir', 'x.png')], /cannot write there/],
    [['upscale', good, '-o', join(dir, 'x.jpg')], /written as PNG/],
    [['upscale', good, '-o', out, '--steps', '1'], /--steps must be an integer from 2 to/],
    [['upscale', good, '-o', out, '--sampler', 'magic'], /--sampler must be one of/],
    [
      ['upscale', good, '-o', out, '--sampler', 'ddim', '--eta', 'Infinity'],
      /--eta must be a number from 0 .* to 1 .*got 'Infinity'/,
    ],
    [
      ['upscale', good, '-o', out, '--sampler', 'ddim', '--eta', '1e308'],
      /--eta must be a number from 0 .*got '1e308'/,
    ],
    [
      ['upscale', good, '-o', out, '--seed', '9007199254740993'],
      /--seed must be an integer from 0 to 9007199254740991, got '9007199254740993'/,
    ],
    [['upscale', good, '-o', out, '--steps', '1e9'], /--steps must be an integer from 2 to 1000000, got '1e9'/],
    [
      ['upscale', good, '-o', out, '--schedule', 'linear:ten:1e-4:0.1'],
      /--schedule 'linear:ten:1e-4:0.1': steps must be a positive integer/,
    ],
    [['upscale', good, '-o', out, '--tile', '0'], /--tile must be an integer from 8/],
    [['upscale', good, '-o', out, '--tile', '32', '--overlap', '40'], /--overlap 40 must be smaller than --tile 32/],
    // refused from the header, before the model runs (it used to sample for 98 s, then fail in the PNG writer)
    [
      ['upscale', save('wide.png', image(4200, 1, 3, 8)), '-o', out],
      /wide.png: 4200x1 would upscale to 16800x4, over the 16384 pixels a side/,
    ],
    [['upscale', good, '-o', good], /this output would overwrite the input/],
  ];
  const goodBytes = readFileSync(good);
  for (const [argv, msg] of cases) {
    const r = await runCli([...argv, '--quiet', ...model]);
    assert.is(r.code, 1, argv.join(' '));
    assert.match(r.out, msg);
    assert.not.ok(existsSync(out));
  }
  assert.ok(readFileSync(good).equals(goodBytes), 'the input was changed');
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'readonly');
    mkdirSync(ro);
    chmodSync(ro, 0o500);
    const r = await runCli(['upscale', good, '-o', join(ro, 'x.png'), '--quiet', ...model]);
    assert.match(r.out, /cannot write there/);
  }
});

test('two inputs with one name get two outputs, and the CLI says so; a file listed twice is upscaled once', async () => {
  mkdirSync(join(dir, 'p'));
  mkdirSync(join(dir, 'q'));
  const a = join(dir, 'p', 'same.png');
  const b = join(dir, 'q', 'same.png');
  writeFileSync(a, encodePng(image(4, 4, 3, 8)));
  writeFileSync(b, encodePng(image(5, 4, 3, 8)));
  const folder = join(dir, 'collide');
  mkdirSync(folder);
  const r = await runCli(['upscale', a, b, a, '-o', folder, '--steps', '2', '--quiet', ...model]);
  assert.is(r.code, 0, r.out);
  assert.equal(readdirSync(folder).sort(), ['same-2_sr4x.png', 'same_sr4x.png']);
  assert.is((await readPng(join(folder, 'same_sr4x.png'))).width, 16);
  assert.is((await readPng(join(folder, 'same-2_sr4x.png'))).width, 20);
  assert.match(r.out, /have the same name; .*q\/same.png's output is named same-2_sr4x.png/);
  assert.match(r.out, /p\/same.png is listed more than once; it is upscaled once/);
});

test('a model with NaN or infinite weights and a legacy checkpoint are refused when they load, as by sr3 info', async () => {
  const input = save('nanin.png', image(4, 4, 3, 8));
  const out = join(dir, 'nan-out.png');
  const conv = convertCheckpoint(readFileSync(model[1]), {
    optionsText: readFileSync(model[3], 'utf8'),
    inflate: nodeInflateRaw,
  });
  const bytes = conv.bytes.slice();
  const t = readSafetensors(bytes).tensors.get('downs.0.weight')!; // a view into bytes
  t.data.set(new Uint8Array(new Float32Array([Number.NaN]).buffer), 4 * 5);
  const nan = join(dir, 'nan.safetensors');
  writeFileSync(nan, bytes);
  const legacy = join(dir, 'legacy.pth');
  writeFileSync(
    legacy,
    new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
  );
  for (const [file, msg] of [
    [nan, /tensor downs.0.weight holds 1 non-finite value \(element 5 is NaN\)/],
    [legacy, /legacy \(pre-1\.6, non-zip\) torch\.save checkpoint.*Re-save/],
  ] as const) {
    const r = await runCli(['upscale', input, '-o', out, '--steps', '2', '--quiet', '--model', file]);
    assert.is(r.code, 1, r.out);
    assert.match(r.out, msg);
    assert.not.ok(existsSync(out));
    const info = await runCli(['info', file]);
    assert.is(info.code, 1);
    assert.is(info.out.replace(/^error: /, ''), r.out.replace(/^error: /, ''), 'upscale and info say the same');
  }
});

test('finite weights that overflow while sampling: refused after sampling, before anything is written', async () => {
  // every weight of the first conv at 3e38 passes the load-time check (all finite), but its outputs overflow to
  // Infinity and the U-Net's GroupNorm turns them into NaN: the result check must catch it, not write a black PNG
  const input = save('hugein.png', image(4, 4, 3, 8));
  const out = join(dir, 'huge-out.png');
  const conv = convertCheckpoint(readFileSync(model[1]), {
    optionsText: readFileSync(model[3], 'utf8'),
    inflate: nodeInflateRaw,
  });
  const bytes = conv.bytes.slice();
  const t = readSafetensors(bytes).tensors.get('downs.0.weight')!;
  const w = new Float32Array(t.data.length / 4).fill(3e38);
  t.data.set(new Uint8Array(w.buffer));
  const huge = join(dir, 'huge.safetensors');
  writeFileSync(huge, bytes);
  const r = await runCli(['upscale', input, '-o', out, '--steps', '2', '--quiet', '--model', huge]);
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /the sampled image holds 768 non-finite values of 768: the sampling diverged/);
  assert.not.ok(existsSync(out));
});

test('sr3 eval reports PSNR, SSIM and consistency for the model and bicubic', async () => {
  const data = join(dir, 'hr');
  mkdirSync(data);
  writeFileSync(join(data, 'one.png'), encodePng(image(20, 20, 3, 8)));
  const r = await runCli(['eval', '--data', data, '--crop', '16', '--steps', '2', '--json', ...model]);
  assert.is(r.code, 0, r.out);
  const rows = r.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  assert.is(rows.length, 2);
  const mean = rows[1];
  assert.is(mean.image, 'mean');
  for (const k of ['bicubic_psnr', 'sr3_psnr', 'bicubic_ssim', 'sr3_ssim', 'sr3_consistency', 'seconds'])
    assert.type(mean[k], 'number', k);
  assert.ok(mean.bicubic_psnr > 5 && mean.bicubic_psnr < 60);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
