// safetensors container: round trips, float16/bfloat16 conversions, and refusing every kind of malformed header.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  readSafetensors,
  writeSafetensors,
  toFloat32,
  f32Entry,
  castFloat,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToBF16Bits,
  bf16BitsToF32,
  type TensorEntry,
} from '../weights-format/index.ts';
import { throwsClean, lcg } from './helpers/weights.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixture = (p: string) => new Uint8Array(readFileSync(path.join(root, 'test/fixtures/golden', p)));

/** Build a safetensors file from a raw header object and data, with no validation (to make lying files). */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const h = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

test('round trip keeps names, dtypes, shapes, bytes and metadata; data starts 8-byte aligned', () => {
  const a = f32Entry([2, 3], Float32Array.from([1, -2, 3.5, 0, 1e-8, 65504]));
  const h = castFloat(f32Entry([3], Float32Array.from([1, 0.5, -2])), 'F16');
  const b: TensorEntry = { dtype: 'I64', shape: [2], data: new Uint8Array(16).fill(1) };
  const bytes = writeSafetensors(
    [
      ['a', a],
      ['half', h],
      ['b', b],
    ],
    { format: 'x', note: 'é ünïcode' },
  );
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is((8 + n) % 8, 0);
  const r = readSafetensors(bytes);
  assert.equal({ ...r.metadata }, { format: 'x', note: 'é ünïcode' });
  assert.equal([...r.tensors.keys()].sort(), ['a', 'b', 'half']);
  assert.equal(Array.from(toFloat32(r.tensors.get('a')!)), Array.from(Float32Array.from([1, -2, 3.5, 0, 1e-8, 65504])));
  assert.equal(Array.from(toFloat32(r.tensors.get('half')!)), [1, 0.5, -2]);
  assert.equal(r.tensors.get('b')!.shape, [2]);
  // every tensor starts at a multiple of its element size (wider types first)
  const dataStart = 8 + n;
  for (const t of r.tensors.values()) {
    const es = t.dtype === 'I64' ? 8 : t.dtype === 'F32' ? 4 : 2;
    assert.is((t.data.byteOffset - dataStart) % es, 0);
  }
});

test('the golden weights.safetensors reads and rewrites byte for byte', () => {
  for (const c of ['tiny', 'groups32']) {
    const bytes = fixture(`${c}/weights.safetensors`);
    const r = readSafetensors(bytes);
    assert.ok(r.tensors.size > 150);
    const again = readSafetensors(writeSafetensors(r.tensors, r.metadata));
    for (const [k, t] of r.tensors) {
      const u = again.tensors.get(k)!;
      assert.equal(u.shape, t.shape);
      assert.ok(Buffer.from(u.data).equals(Buffer.from(t.data)), k);
    }
  }
});

test('float16: exact known encodings and round to nearest even', () => {
  assert.is(f32ToF16Bits(1), 0x3c00);
  assert.is(f32ToF16Bits(-2), 0xc000);
  assert.is(f32ToF16Bits(65504), 0x7bff);
  assert.is(f32ToF16Bits(65519), 0x7bff); // below the halfway point to 65536
  assert.is(f32ToF16Bits(65520), 0x7c00); // halfway, rounds to even = Inf
  assert.is(f32ToF16Bits(0.1), 0x2e66);
  assert.is(f32ToF16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.is(f32ToF16Bits(2 ** -25), 0x0000); // tie -> even (0)
  assert.is(f32ToF16Bits(3 * 2 ** -25), 0x0002); // 1.5 ulp -> even (2)
  assert.is(f32ToF16Bits(2 ** -14 - 2 ** -25), 0x0400); // rounds up from the largest subnormal to the smallest normal
  assert.is(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.is(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.is(f32ToF16Bits(-0), 0x8000);
  assert.is(f32ToF16Bits(Infinity), 0x7c00);
  assert.is(f32ToF16Bits(NaN) & 0x7e00, 0x7e00);
  // every finite half survives half -> float -> half
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
    if (f32ToF16Bits(f16BitsToF32(h)) !== h) assert.unreachable(`half 0x${h.toString(16)} does not round trip`);
  }
  assert.is(f16BitsToF32(0x3555), 0.333251953125);
});

test('bfloat16: exact known encodings and round to nearest even', () => {
  assert.is(f32ToBF16Bits(1), 0x3f80);
  assert.is(f32ToBF16Bits(-2), 0xc000);
  assert.is(f32ToBF16Bits(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.is(f32ToBF16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
  assert.is(f32ToBF16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.is(f32ToBF16Bits(3.4028234663852886e38), 0x7f80); // max float32 rounds to Inf
  assert.is(f32ToBF16Bits(NaN) & 0x7fc0, 0x7fc0);
  assert.is(bf16BitsToF32(0x4049), 3.140625);
});

test('castFloat refuses values that overflow F16, naming the tensor', () => {
  throwsClean(
    () => castFloat(f32Entry([2], Float32Array.from([1, 70000])), 'F16', 'tensor big'),
    /tensor big.*70000.*F16/,
    'overflow',
  );
  const bf = castFloat(f32Entry([2], Float32Array.from([1, 70000])), 'BF16', 'ok');
  assert.equal(Array.from(toFloat32(bf)), [1, 70144]);
});

test('F64 and integer tensors convert to float32', () => {
  const d = new Uint8Array(16);
  new DataView(d.buffer).setFloat64(0, 0.1, true);
  new DataView(d.buffer).setFloat64(8, -3, true);
  assert.equal(Array.from(toFloat32({ dtype: 'F64', shape: [2], data: d })), [Math.fround(0.1), -3]);
  const i = new Uint8Array(8);
  new DataView(i.buffer).setInt32(0, -7, true);
  new DataView(i.buffer).setInt32(4, 9, true);
  assert.equal(Array.from(toFloat32({ dtype: 'I32', shape: [2], data: i })), [-7, 9]);
});

const okData = new Uint8Array(24);
const okHeader = {
  a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
  b: { dtype: 'F32', shape: [2, 2], data_offsets: [8, 24] },
};

test('a valid hand-made file parses (control for the lying headers below)', () => {
  const r = readSafetensors(rawFile(okHeader, okData));
  assert.equal([...r.tensors.keys()], ['a', 'b']);
});

test('headers that lie about offsets, shapes, dtypes or lengths are refused with clear errors', () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    [
      'offset past the end',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [2, 2], data_offsets: [8, 40] } }, okData),
      /past the end/,
    ],
    [
      'overlap',
      rawFile(
        {
          a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
          b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
        },
        okData,
      ),
      /overlaps/,
    ],
    [
      'gap',
      rawFile(
        {
          a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
        },
        okData,
      ),
      /belong to no tensor/,
    ],
    [
      'trailing bytes',
      rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, okData),
      /after the last tensor/,
    ],
    [
      'shape x dtype != bytes',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [3, 2], data_offsets: [8, 24] } }, okData),
      /needs 24 bytes but .* span 16/,
    ],
    [
      'dtype lies',
      rawFile({ ...okHeader, b: { dtype: 'F64', shape: [2, 2], data_offsets: [8, 24] } }, okData),
      /needs 32 bytes/,
    ],
    [
      'end before start',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [0], data_offsets: [24, 8] } }, okData),
      /end before they start/,
    ],
    [
      'negative dim',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [-4], data_offsets: [8, 24] } }, okData),
      /non-negative integer/,
    ],
    [
      'fractional dim',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [1.5], data_offsets: [8, 24] } }, okData),
      /non-negative integer/,
    ],
    [
      'huge dims',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [8, 24] } }, okData),
      /impossibly large/,
    ],
    [
      'unknown dtype',
      rawFile({ ...okHeader, b: { dtype: 'F128', shape: [2, 2], data_offsets: [8, 24] } }, okData),
      /dtype "F128" is not one of/,
    ],
    [
      'string offsets',
      rawFile({ ...okHeader, b: { dtype: 'F32', shape: [2, 2], data_offsets: ['8', '24'] } }, okData),
      /data_offsets must be/,
    ],
    ['missing shape', rawFile({ ...okHeader, b: { dtype: 'F32', data_offsets: [8, 24] } }, okData), /shape is missing/],
    ['entry not an object', rawFile({ ...okHeader, b: 7 }, okData), /not an object/],
    [
      'metadata not strings',
      rawFile({ ...okHeader, __metadata__: { v: 1 } }, okData),
      /__metadata__ value for "v" is not a string/,
    ],
    ['header is an array', rawFile([1, 2], okData), /does not start with '\{'|not a JSON object/],
    ['header not JSON', rawFile(null, okData, '{"a": {'), /not valid JSON/],
    [
      'header not UTF-8',
      (() => {
        const f = rawFile(okHeader, okData);
        f[10] = 0xff;
        return f;
      })(),
      /not valid UTF-8/,
    ],
    [
      'inherited dtype',
      rawFile(
        { ...okHeader, b: { shape: [2, 2], data_offsets: [8, 24], __proto__: { dtype: 'F32' } } },
        okData,
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"shape":[4],"data_offsets":[8,24],"__proto__":{"dtype":"F32"}}}',
      ),
      /dtype undefined is not one of/,
    ],
  ];
  for (const [what, bytes, re] of cases) throwsClean(() => readSafetensors(bytes), re, what);
  // header length lying about the file size
  const f = rawFile(okHeader, okData);
  new DataView(f.buffer).setBigUint64(0, BigInt(f.length), true);
  throwsClean(() => readSafetensors(f), /claims .* bytes but only/, 'header length > file');
  new DataView(f.buffer).setBigUint64(0, 0xffffffffffffffffn, true);
  throwsClean(() => readSafetensors(f), /claims .* bytes but only/, 'header length 2^64-1');
});

test('metadata keys like __proto__ are plain data', () => {
  const text =
    '{"__metadata__":{"__proto__":"x","constructor":"y"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const r = readSafetensors(rawFile(null, new Uint8Array(8), text));
  assert.is(Object.getPrototypeOf(r.metadata), null);
  // biome-ignore lint/suspicious/noProto: the test is that a key named __proto__ is kept as data
  assert.is(r.metadata['__proto__'], 'x');
  assert.is(r.metadata['constructor'], 'y');
  assert.is(({} as Record<string, unknown>)['x'], undefined);
});

test('truncated files at many lengths are refused cleanly', () => {
  const bytes = fixture('tiny/weights.safetensors');
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const lengths = new Set([
    0,
    1,
    4,
    7,
    8,
    9,
    100,
    n,
    n + 7,
    n + 8,
    n + 9,
    bytes.length >> 1,
    bytes.length - 4,
    bytes.length - 1,
  ]);
  for (let i = 1; i < 24; i++) lengths.add(Math.floor((bytes.length * i) / 24));
  for (const len of lengths) {
    throwsClean(
      () => readSafetensors(bytes.slice(0, len)),
      /safetensors: .*(truncated|too short|belong to no tensor|past the end|too small|JSON)/,
      `length ${len}`,
    );
  }
});

test('flipped bytes: every corruption is either refused cleanly or still a consistent file', () => {
  const small = writeSafetensors(
    [
      [
        'w',
        f32Entry(
          [3, 4],
          Float32Array.from({ length: 12 }, (_, i) => i / 7),
        ),
      ],
      ['b', castFloat(f32Entry([5], Float32Array.from([1, 2, 3, 4, 5])), 'F16')],
    ],
    { format: 'test', config: '{"x":1}' },
  );
  const rnd = lcg(12345);
  let refused = 0;
  for (let it = 0; it < 400; it++) {
    const f = small.slice();
    const flips = 1 + Math.floor(rnd() * 3);
    for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] ^= 1 << Math.floor(rnd() * 8);
    try {
      const r = readSafetensors(f);
      // accepted: then it must be self-consistent
      for (const t of r.tensors.values()) toFloat32(t);
    } catch (e) {
      assert.ok(
        e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError),
        `crash: ${(e as Error).stack}`,
      );
      assert.match((e as Error).message, /^(safetensors|toFloat32):/);
      refused++;
    }
  }
  assert.ok(refused > 50, `only ${refused} corruptions were noticed`);
});

test('writer refuses inconsistent input', () => {
  throwsClean(
    () => writeSafetensors([['a', { dtype: 'F32', shape: [3], data: new Uint8Array(8) }]]),
    /needs 12 bytes, got 8/,
    'size',
  );
  throwsClean(() => writeSafetensors([['__metadata__', f32Entry([1], new Float32Array(1))]]), /reserved/, 'reserved');
  throwsClean(
    () =>
      writeSafetensors([
        ['a', f32Entry([1], new Float32Array(1))],
        ['a', f32Entry([1], new Float32Array(1))],
      ]),
    /appears twice/,
    'dup',
  );
});

test.run();
