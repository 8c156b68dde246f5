// U-Net parameter layout, config inference, options files, schedules, and the model file's own validation.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as W from '../weights-format/index.ts';
import {
  readSafetensors,
  writeSafetensors,
  toFloat32,
  f32Entry,
  expectedParamShapes,
  inferConfig,
  validateConfig,
  normalizedChannels,
  resolveAttentionLevels,
  stripJsonComments,
  parseReferenceOptions,
  detectSchedule,
  makeBetas,
  linspace,
  loadModel,
  convertCheckpoint,
  convertStateDict,
  paramCount,
  type UNetConfig,
  type TensorEntry,
} from '../weights-format/index.ts';
import { nodeInflateRaw } from '../weights-format/node.ts';
import { throwsClean } from './helpers/weights.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixture = (p: string) => new Uint8Array(readFileSync(path.join(root, 'test/fixtures/golden', p)));
const text = (p: string) => readFileSync(path.join(root, 'test/fixtures/golden', p), 'utf8');

const TINY: UNetConfig = {
  in_channel: 6,
  out_channel: 3,
  inner_channel: 16,
  channel_mults: [1, 2, 2],
  res_blocks: 1,
  norm_groups: 8,
  dropout: 0,
  attn_levels: [2],
};
const G32: UNetConfig = {
  in_channel: 6,
  out_channel: 3,
  inner_channel: 32,
  channel_mults: [1, 2],
  res_blocks: 2,
  norm_groups: 32,
  dropout: 0,
  attn_levels: [1],
};

function goldenUnet(c: string): Map<string, TensorEntry> {
  const m = new Map<string, TensorEntry>();
  for (const [k, t] of readSafetensors(fixture(`${c}/weights.safetensors`)).tensors) {
    if (k.startsWith('denoise_fn.')) m.set(k.slice('denoise_fn.'.length), t);
  }
  return m;
}

for (const [c, cfg] of [
  ['tiny', TINY],
  ['groups32', G32],
] as const) {
  test('nonFinite finds NaN and infinities in every float dtype by their bits, and nothing in finite values', () => {
    const { castFloat, f32Entry, nonFinite } = W;
    const good = f32Entry([5], new Float32Array([0, -1.5, 65504, 3.4e38, -1e-40]));
    for (const dt of ['F32', 'F16', 'BF16'] as const) {
      const vals =
        dt === 'F16'
          ? new Float32Array([0, -1.5, 65504, 1, -6e-8])
          : new Float32Array([0, -1.5, 65504, 3.3e38, -1e-40]);
      assert.is(nonFinite(castFloat(f32Entry([5], vals), dt, 't')), undefined, dt);
      const bad = castFloat(f32Entry([5], new Float32Array([1, 2, Number.NaN, -Infinity, 3])), dt, 't');
      const r = nonFinite(bad)!;
      assert.equal([r.index, r.count, Number.isNaN(r.value)], [2, 2, true], dt);
    }
    assert.is(nonFinite(good), undefined);
    const inf = nonFinite(f32Entry([2], new Float32Array([Infinity, 0])))!;
    assert.equal([inf.index, inf.value, inf.count], [0, Infinity, 1]);
  });

  test(`${c}: expectedParamShapes lists exactly the golden U-Net tensors, in the reference's order, with their shapes`, () => {
    const want = expectedParamShapes(cfg);
    const gold = goldenUnet(c);
    assert.equal([...want.keys()], [...gold.keys()]);
    for (const [k, s] of want) assert.equal(s, gold.get(k)!.shape, k);
    let n = 0;
    for (const t of gold.values()) n += t.shape.reduce((a, b) => a * b, 1);
    assert.is(paramCount(cfg), n);
  });

  test(`${c}: config inferred from the shapes matches the options file's`, () => {
    const shapes = new Map([...goldenUnet(c)].map(([k, t]) => [k, t.shape]));
    assert.equal(inferConfig(shapes, cfg.norm_groups), cfg);
    const opts = parseReferenceOptions(text(`${c}/config.json`));
    assert.equal(
      { ...opts.unet, image_size: undefined, attn_res: undefined },
      { ...cfg, image_size: undefined, attn_res: undefined },
    );
    assert.equal(opts.schedule, { schedule: 'linear', n_timestep: 12, linear_start: 1e-4, linear_end: 0.3 });
  });
}

test('attention placement follows the reference rule (image_size halves per level)', () => {
  assert.equal(resolveAttentionLevels(128, [16], 4), [3]);
  assert.equal(resolveAttentionLevels(128, [16], 5), [3]);
  assert.equal(resolveAttentionLevels(32, [8], 3), [2]);
  assert.equal(resolveAttentionLevels(256, [16, 32], 6), [3, 4]);
  assert.equal(resolveAttentionLevels(64, [7], 3), []);
});

test('GroupNorm count: checked against every normalised channel count, with a fix in the message', () => {
  assert.equal(normalizedChannels(TINY), [16, 32, 48, 64]);
  throwsClean(
    () => validateConfig({ ...TINY, norm_groups: 32 }),
    /norm_groups 32 does not divide .*16, 48.*--norm-groups/,
    'tiny with 32',
  );
  const shapes = new Map([...goldenUnet('tiny')].map(([k, t]) => [k, t.shape]));
  throwsClean(
    () => convertStateDict(goldenUnet('tiny')),
    /default group count.*norm_groups 32 does not divide.*--norm-groups N/,
    'default 32 on tiny',
  );
  assert.is(inferConfig(shapes, 16).norm_groups, 16); // 16 divides 16/32/48/64: allowed, it is the user's call
  throwsClean(
    () => convertStateDict(goldenUnet('tiny'), { normGroups: 5 }),
    /--norm-groups.*does not divide/,
    'flag 5',
  );
  throwsClean(
    () => convertStateDict(goldenUnet('tiny'), { normGroups: 4, optionsText: text('tiny/config.json') }),
    /--norm-groups 4 contradicts norm_groups 8 in the options file/,
    'flag vs file',
  );
});

test('config validation names the bad field', () => {
  throwsClean(() => validateConfig({ ...TINY, inner_channel: 0 }), /inner_channel must be a positive integer/, 'inner');
  throwsClean(() => validateConfig({ ...TINY, channel_mults: [] }), /channel_mults must be a non-empty list/, 'mults');
  throwsClean(
    () => validateConfig({ ...TINY, attn_levels: [3] }),
    /attn_levels must list distinct level indices in 0..2/,
    'attn',
  );
  throwsClean(() => validateConfig({ ...TINY, dropout: 1 }), /dropout must be a number in \[0, 1\)/, 'dropout');
  throwsClean(() => validateConfig('x'), /not an object/, 'string');
});

test('inference refuses tensors that are not an SR3 U-Net, listing the problems', () => {
  const sd = goldenUnet('tiny');
  const noQkv = new Map(sd);
  noQkv.delete('ups.1.attn.qkv.weight');
  throwsClean(
    () => convertStateDict(noQkv, { normGroups: 8 }),
    /attention in some blocks only|missing ups\.1\.attn\.qkv\.weight/,
    'missing qkv',
  );
  const badShape = new Map(sd);
  badShape.set('mid.1.res_block.block2.block.3.weight', f32Entry([32, 32, 1, 1], new Float32Array(32 * 32)));
  throwsClean(
    () => convertStateDict(badShape, { normGroups: 8 }),
    /mid\.1\.res_block\.block2\.block\.3\.weight has shape \[32,32,1,1\], expected \[32,32,3,3\]/,
    'shape',
  );
  const extra = new Map(sd);
  extra.set('downs.1.extra.weight', f32Entry([1], new Float32Array(1)));
  throwsClean(() => convertStateDict(extra, { normGroups: 8 }), /unexpected tensor downs\.1\.extra\.weight/, 'extra');
  throwsClean(
    () => convertStateDict(new Map([['foo', f32Entry([1], new Float32Array(1))]])),
    /downs\.0\.weight is missing/,
    'not a unet',
  );
  // an options file that disagrees with the tensors
  const wrong = text('groups32/config.json');
  throwsClean(
    () => convertStateDict(sd, { optionsText: wrong }),
    /options file does not describe this checkpoint's U-Net/,
    'wrong options',
  );
  // keys outside denoise_fn.* and the schedule buffers
  const odd = new Map([...sd].map(([k, t]) => [`denoise_fn.${k}`, t] as [string, TensorEntry]));
  odd.set('ema_decay', f32Entry([1], new Float32Array(1)));
  throwsClean(() => convertStateDict(odd, { normGroups: 8 }), /neither U-Net parameters .* ema_decay/, 'odd key');
});

test('options files: // and /* */ comments are stripped outside strings only', () => {
  const src = `{
    // a comment with "quotes"
    "url": "http://example.com/a//b", /* block
    comment */ "s": "not /* a comment */ here", "esc": "quote \\" // still string"
  }`;
  const v = JSON.parse(stripJsonComments(src));
  assert.equal(v, { url: 'http://example.com/a//b', s: 'not /* a comment */ here', esc: 'quote " // still string' });
  const commented = text('tiny/config.json')
    .replace('"unet": {', '"unet": { // the U-Net\n')
    .replace('"res_blocks": 1,', '"res_blocks": 1, // one per level\n');
  assert.equal(parseReferenceOptions(commented).unet.res_blocks, 1);
  // a whole reference options file with datasets: scale from l/r resolution
  const full = `{ "name": "sr_ffhq", "datasets": { "train": { "l_resolution": 16, "r_resolution": 128 } }, // x8
    "model": ${JSON.stringify(JSON.parse(text('tiny/config.json')).model)} }`;
  assert.equal(parseReferenceOptions(full).condition, { scale: 8, resample: 'bicubic', bicubic_a: -0.5 });
  throwsClean(() => parseReferenceOptions('{"model": {}}'), /no model\.unet section/, 'no unet');
  throwsClean(
    () => parseReferenceOptions('{"model": {"unet": {"in_channel": 6}}}'),
    /model\.unet\.channel_multiplier is missing/,
    'missing key',
  );
  throwsClean(() => parseReferenceOptions('{ nope'), /not valid JSON/, 'bad json');
});

test('schedules: numpy linspace bit for bit; linear, quad and custom betas recovered', () => {
  // numpy.linspace(1e-4, 0.3, 12)[5] == 0.13640909090909092 (computed as 5 * step + start)
  assert.is(linspace(1e-4, 0.3, 12)[5], 5 * ((0.3 - 1e-4) / 11) + 1e-4);
  assert.is(linspace(1e-4, 0.3, 12)[11], 0.3);
  const lin = Float32Array.from(
    makeBetas({ schedule: 'linear', n_timestep: 100, linear_start: 1e-4, linear_end: 2e-2 }),
  );
  assert.equal(detectSchedule(lin).schedule, {
    schedule: 'linear',
    n_timestep: 100,
    linear_start: 1e-4,
    linear_end: 2e-2,
  });
  const quad = Float32Array.from(makeBetas({ schedule: 'quad', n_timestep: 50, linear_start: 1e-4, linear_end: 2e-2 }));
  assert.is(detectSchedule(quad).schedule.schedule, 'quad');
  const cos = Float32Array.from(makeBetas({ schedule: 'cosine', n_timestep: 30 }));
  const hinted = detectSchedule(cos, { schedule: 'cosine', n_timestep: 30 });
  assert.ok(hinted.matchedHint);
  const custom = detectSchedule(cos).schedule;
  assert.is(custom.schedule, 'custom');
  assert.equal(Float32Array.from(custom.betas!), cos);
  throwsClean(() => detectSchedule(Float32Array.from([0.1, 1.5])), /outside \(0, 1\)/, 'bad betas');
});

// ---------------------------------------------------------------------------------------------------------------
// The model file

function tinyModelBytes(): Uint8Array {
  return convertCheckpoint(fixture('tiny/model_gen.pth'), {
    optionsText: text('tiny/config.json'),
    inflate: nodeInflateRaw,
  }).bytes;
}

test('model file: metadata holds format, version, config, schedule; conversion is deterministic', () => {
  const a = tinyModelBytes();
  const b = tinyModelBytes();
  assert.ok(Buffer.from(a).equals(Buffer.from(b)), 'same input, same bytes');
  const { metadata } = readSafetensors(a);
  assert.is(metadata.format, 'sr3-wgsl');
  assert.is(metadata.format_version, '1');
  assert.equal(JSON.parse(metadata.config), { ...TINY, image_size: 32, attn_res: [8] });
  assert.equal(JSON.parse(metadata.schedule), {
    schedule: 'linear',
    n_timestep: 12,
    linear_start: 1e-4,
    linear_end: 0.3,
  });
  const m = loadModel(a);
  assert.equal([...m.tensors.keys()], [...expectedParamShapes(TINY).keys()]);
  assert.is(m.dtype, 'F32');
});

test('model file: F16 and BF16 variants load with values within half an ulp of F32', () => {
  const gold = goldenUnet('tiny');
  for (const [dtype, rel] of [
    ['F16', 2 ** -11],
    ['BF16', 2 ** -8],
  ] as const) {
    const m = convertCheckpoint(fixture('tiny/model_gen.pth'), { normGroups: 8, dtype, inflate: nodeInflateRaw }).model;
    assert.is(m.dtype, dtype);
    for (const [k, t] of gold) {
      const want = toFloat32(t);
      const got = m.param(k);
      for (let i = 0; i < want.length; i++) {
        const tol = Math.max(Math.abs(want[i]) * rel, 2 ** -25);
        if (!(Math.abs(got[i] - want[i]) <= tol)) assert.unreachable(`${dtype} ${k}[${i}]: ${got[i]} vs ${want[i]}`);
      }
    }
  }
});

test('model file: loadModel refuses files that are not ours or lie about their contents', () => {
  const good = tinyModelBytes();
  const { metadata, tensors } = readSafetensors(good);
  const remake = (meta: Record<string, string>, t: Map<string, TensorEntry> = tensors) => writeSafetensors(t, meta);
  throwsClean(
    () => loadModel(fixture('tiny/weights.safetensors')),
    /not an sr3-wgsl model file.*reference state_dict.*sr3 convert/,
    'reference safetensors',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, format_version: '2' })),
    /format version 2 is newer .* upgrade/,
    'newer',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, format_version: 'one' })),
    /format_version "one" is not an integer/,
    'version text',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, config: '{"in_channel": 6' })),
    /config is not valid JSON/,
    'config json',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, config: JSON.stringify({ ...TINY, channel_mults: [1, 2, 4] }) })),
    /tensors do not match its config/,
    'config lies',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, config: JSON.stringify({ ...TINY, res_blocks: 2 }) })),
    /missing downs\.2\.res_block/,
    'res_blocks lies',
  );
  throwsClean(
    () => loadModel(remake({ ...metadata, schedule: '{"schedule":"linear","n_timestep":-3}' })),
    /n_timestep must be a positive integer/,
    'schedule',
  );
  const missing = new Map(tensors);
  missing.delete('mid.0.attn.qkv.weight');
  throwsClean(
    () => loadModel(remake(metadata, missing)),
    /missing mid\.0\.attn\.qkv\.weight \[96,32,1,1\]/,
    'missing tensor',
  );
  const wrong = new Map(tensors);
  wrong.set('downs.0.bias', f32Entry([15], new Float32Array(15)));
  throwsClean(
    () => loadModel(remake(metadata, wrong)),
    /downs\.0\.bias has shape \[15\], expected \[16\]/,
    'wrong shape',
  );
  const ints = new Map(tensors);
  ints.set('downs.0.bias', { dtype: 'I32', shape: [16], data: new Uint8Array(64) });
  throwsClean(
    () => loadModel(remake(metadata, ints)),
    /downs\.0\.bias is I32; parameters must be F32, F16 or BF16/,
    'int tensor',
  );
  const extra = new Map(tensors);
  extra.set('betas', f32Entry([12], new Float32Array(12)));
  throwsClean(() => loadModel(remake(metadata, extra)), /unexpected tensor betas/, 'extra tensor');
});

test.run();
