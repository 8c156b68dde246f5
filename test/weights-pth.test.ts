// Importing reference PyTorch checkpoints: bit-exact against the golden safetensors, unusual layouts handled, and
// hostile or broken files refused without executing anything.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import {
  readPth,
  readPthAsync,
  readSafetensors,
  toFloat32,
  unpickle,
  convertCheckpoint,
  makeBetas,
  webInflateRaw,
  SCHEDULE_BUFFERS,
} from '../weights-format/index.ts';
import { nodeInflateRaw } from '../weights-format/node.ts';
import { PickleBuilder, stateDictPickle, fakePth, throwsClean, lcg, type FakeTensor } from './helpers/weights.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixture = (p: string) => new Uint8Array(readFileSync(path.join(root, 'test/fixtures/golden', p)));
const NATURAL = path.resolve(root, '../shared/reference/natural4x_gen.pth');
const NATURAL_CFG = path.resolve(root, '../shared/reference/natural4x_config.json');

const f32bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

for (const c of ['tiny', 'groups32']) {
  test(`${c}: model_gen.pth imports every tensor of weights.safetensors bit for bit`, () => {
    const sd = readPth(fixture(`${c}/model_gen.pth`), { inflate: nodeInflateRaw });
    const gold = readSafetensors(fixture(`${c}/weights.safetensors`)).tensors;
    assert.equal([...sd.tensors.keys()], [...gold.keys()], 'same keys in the same order');
    for (const [k, g] of gold) {
      const t = sd.tensors.get(k)!;
      assert.is(t.dtype, g.dtype, k);
      assert.equal(t.shape, g.shape, k);
      assert.ok(Buffer.from(t.data).equals(Buffer.from(g.data)), `${k} differs`);
    }
  });

  test(`${c}: converted model file holds the golden U-Net tensors bit for bit and the training schedule`, () => {
    const cfgText = readFileSync(path.join(root, 'test/fixtures/golden', c, 'config.json'), 'utf8');
    const res = convertCheckpoint(fixture(`${c}/model_gen.pth`), { optionsText: cfgText, inflate: nodeInflateRaw });
    const m = res.model;
    const gold = readSafetensors(fixture(`${c}/weights.safetensors`)).tensors;
    let n = 0;
    for (const [k, g] of gold) {
      if (SCHEDULE_BUFFERS.includes(k)) continue;
      assert.ok(k.startsWith('denoise_fn.'), k);
      const t = m.tensors.get(k.slice('denoise_fn.'.length));
      assert.ok(t, `missing ${k}`);
      assert.ok(Buffer.from(t!.data).equals(Buffer.from(g.data)), `${k} differs`);
      n++;
    }
    assert.is(m.tensors.size, n, 'no extra tensors');
    // the schedule read back from the betas buffer regenerates it exactly
    assert.equal(m.schedule, { schedule: 'linear', n_timestep: 12, linear_start: 0.0001, linear_end: 0.3 });
    const betas = toFloat32(gold.get('betas')!);
    assert.equal(Array.from(makeBetas(m.schedule!), Math.fround), Array.from(betas));
    assert.equal(res.warnings, []);
    // param() gives the golden float32 values
    assert.equal(
      Array.from(m.param('final_conv.block.3.bias')),
      Array.from(toFloat32(gold.get('denoise_fn.final_conv.block.3.bias')!)),
    );
    throwsClean(() => m.param('downs.99.weight'), /no U-Net parameter named "downs.99.weight"/, 'param');
  });
}

test('natural4x_gen.pth (shared/reference) converts with and without its options file', () => {
  if (!existsSync(NATURAL)) {
    console.log(`  note: ${NATURAL} not present; skipped`);
    return;
  }
  const bytes = new Uint8Array(readFileSync(NATURAL));
  const a = convertCheckpoint(bytes, { inflate: nodeInflateRaw }).model;
  const b = convertCheckpoint(bytes, { inflate: nodeInflateRaw, optionsText: readFileSync(NATURAL_CFG, 'utf8') }).model;
  const want = {
    in_channel: 6,
    out_channel: 3,
    inner_channel: 32,
    channel_mults: [1, 2, 4, 4],
    res_blocks: 2,
    norm_groups: 32,
    dropout: 0,
    attn_levels: [3],
  };
  assert.equal(a.config, want);
  assert.equal(b.config, { ...want, image_size: 128, attn_res: [16] });
  assert.equal(a.schedule, { schedule: 'linear', n_timestep: 2000, linear_start: 1e-6, linear_end: 0.01 });
  assert.equal(b.schedule, a.schedule);
  assert.equal(b.condition?.scale, 4);
  assert.is(b.condition?.resample, 'bicubic');
  let params = 0;
  for (const t of a.tensors.values()) params += t.shape.reduce((x, y) => x * y, 1);
  assert.ok(Math.abs(params - 6.13e6) < 0.01e6, `${params} parameters`);
  assert.is(a.tensors.size, 312 - 12);
  for (const [k, t] of a.tensors) assert.ok(Buffer.from(t.data).equals(Buffer.from(b.tensors.get(k)!.data)), k);
  // spot check against the raw checkpoint
  const sd = readPth(bytes, { inflate: nodeInflateRaw });
  assert.ok(
    Buffer.from(sd.tensors.get('denoise_fn.ups.0.attn.qkv.weight')!.data).equals(
      Buffer.from(a.tensors.get('ups.0.attn.qkv.weight')!.data),
    ),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Hand-built checkpoints

const W = [0, 1, 2, 3, 4, 5]; // a 2x3 matrix, row-major

test('strided (transposed, offset) tensors are gathered correctly', () => {
  const storage = f32bytes([9, 9, ...W]); // two leading junk elements
  const tensors: Array<[string, FakeTensor]> = [
    ['m', { storage: 'FloatStorage', key: '0', numel: 8, offset: 2, size: [2, 3], stride: [3, 1] }],
    ['mt', { storage: 'FloatStorage', key: '0', numel: 8, offset: 2, size: [3, 2], stride: [1, 3] }],
    ['col', { storage: 'FloatStorage', key: '0', numel: 8, offset: 3, size: [2], stride: [3] }],
    ['bcast', { storage: 'FloatStorage', key: '0', numel: 8, offset: 4, size: [2, 2], stride: [0, 1] }],
    ['empty', { storage: 'FloatStorage', key: '0', numel: 8, offset: 0, size: [0, 5], stride: [5, 1] }],
  ];
  const sd = readPth(fakePth({ pickle: stateDictPickle(tensors), storages: { '0': storage } })).tensors;
  assert.equal(Array.from(toFloat32(sd.get('m')!)), [0, 1, 2, 3, 4, 5]);
  assert.equal(Array.from(toFloat32(sd.get('mt')!)), [0, 3, 1, 4, 2, 5]);
  assert.equal(sd.get('mt')!.shape, [3, 2]);
  assert.equal(Array.from(toFloat32(sd.get('col')!)), [1, 4]);
  assert.equal(Array.from(toFloat32(sd.get('bcast')!)), [2, 3, 2, 3]);
  assert.equal(sd.get('empty')!.data.length, 0);
});

test('an OrderedDict state_dict with its _metadata attribute (BUILD) reads as a plain dict of tensors', () => {
  const tensors: Array<[string, FakeTensor]> = [
    ['w', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [6], stride: [1] }],
  ];
  const sd = readPth(fakePth({ pickle: stateDictPickle(tensors, true, true), storages: { '0': f32bytes(W) } })).tensors;
  assert.equal([...sd.keys()], ['w']);
  assert.equal(Array.from(toFloat32(sd.get('w')!)), W);
});

test('big-endian storages are byte-swapped; half and bfloat16 storages keep their dtype', () => {
  const be = new Uint8Array(12);
  [1.5, -2, 1e-3].forEach((v, i) => {
    new DataView(be.buffer).setFloat32(4 * i, v, false);
  });
  const half = new Uint8Array([0x00, 0x3c, 0x00, 0xc0]); // 1, -2 little-endian
  const tensors: Array<[string, FakeTensor]> = [
    ['x', { storage: 'FloatStorage', key: '0', numel: 3, offset: 0, size: [3], stride: [1] }],
  ];
  const sd = readPth(fakePth({ pickle: stateDictPickle(tensors), storages: { '0': be }, byteorder: 'big' }));
  assert.is(sd.byteorder, 'big');
  assert.equal(Array.from(toFloat32(sd.tensors.get('x')!)), [1.5, -2, Math.fround(1e-3)]);
  const h = readPth(
    fakePth({
      pickle: stateDictPickle([
        ['h', { storage: 'HalfStorage', key: '0', numel: 2, offset: 0, size: [2], stride: [1] }],
        ['b', { storage: 'BFloat16Storage', key: '1', numel: 2, offset: 0, size: [2], stride: [1] }],
      ]),
      storages: { '0': half, '1': new Uint8Array([0x80, 0x3f, 0x49, 0x40]) },
      byteorder: null,
    }),
  ).tensors;
  assert.is(h.get('h')!.dtype, 'F16');
  assert.equal(Array.from(toFloat32(h.get('h')!)), [1, -2]);
  assert.equal(Array.from(toFloat32(h.get('b')!)), [1, 3.140625]);
});

test('deflated entries: inflated through the injected function, sync and async; missing inflate is a clear error', async () => {
  const tensors: Array<[string, FakeTensor]> = [
    ['m', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1] }],
  ];
  const z = fakePth({
    pickle: stateDictPickle(tensors),
    storages: { '0': f32bytes(W) },
    deflate: (b) => deflateRawSync(b),
  });
  assert.equal(Array.from(toFloat32(readPth(z, { inflate: nodeInflateRaw }).tensors.get('m')!)), W);
  const asyncInflate = async (d: Uint8Array) => nodeInflateRaw(d, 1 << 20);
  assert.equal(Array.from(toFloat32((await readPthAsync(z, { inflate: asyncInflate })).tensors.get('m')!)), W);
  throwsClean(() => readPth(z), /deflate-compressed and no inflate function/, 'no inflate');
  // the web platform's DecompressionStream (what a browser would pass)
  assert.equal(Array.from(toFloat32((await readPthAsync(z, { inflate: webInflateRaw })).tensors.get('m')!)), W);
  // A deflate stream that expands beyond the promised size (zip bomb) is stopped by the Node inflate's limit.
  const bomb = fakePth({
    pickle: stateDictPickle(tensors),
    storages: { '0': f32bytes(W) },
    deflate: (b) => (b.length === 24 ? deflateRawSync(new Uint8Array(1 << 20)) : deflateRawSync(b)),
  });
  throwsClean(() => readPth(bomb, { inflate: nodeInflateRaw }), /does not inflate|decompressed to/, 'bomb');
});

test('a pickle or storage whose declared size is absurd for a checkpoint is refused before it is inflated', () => {
  const tensors: Array<[string, FakeTensor]> = [
    ['m', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1] }],
  ];
  const inflated: number[] = [];
  const spy = (d: Uint8Array, size: number) => {
    inflated.push(size);
    return nodeInflateRaw(d, size);
  };
  // a 32 MiB pickle deflates to 32 KB: a 1 MB file could promise gigabytes
  const pickleBomb = fakePth({
    pickle: new Uint8Array(32 << 20),
    storages: { '0': f32bytes(W) },
    deflate: (b) => deflateRawSync(b),
  });
  assert.ok(pickleBomb.length < 200_000, `${pickleBomb.length}`);
  throwsClean(
    () => readPth(pickleBomb, { inflate: spy }),
    /its pickle archive\/data.pkl declares 33554432 bytes.*corrupt or hostile/,
    'pickle bomb',
  );
  // a storage promising 80 MiB from an 80 KB file (the limit: 16x the file + 64 MiB)
  const storageBomb = fakePth({
    pickle: stateDictPickle(tensors),
    storages: { '0': new Uint8Array(80 << 20) },
    deflate: (b) => deflateRawSync(b),
  });
  throwsClean(
    () => readPth(storageBomb, { inflate: spy }),
    /zip entry "archive\/data\/0" declares 83886080 bytes, more than a \d+-byte file can hold/,
    'storage bomb',
  );
  assert.equal(inflated, [], 'nothing was inflated');
});

test('a zip with a missing entry is refused, naming it', () => {
  const tensors: Array<[string, FakeTensor]> = [
    ['a', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [6], stride: [1] }],
    ['b', { storage: 'FloatStorage', key: '1', numel: 6, offset: 0, size: [6], stride: [1] }],
  ];
  const pkl = stateDictPickle(tensors);
  throwsClean(
    () => readPth(fakePth({ pickle: pkl, storages: { '0': f32bytes(W), '1': f32bytes(W) }, omit: ['data/1'] })),
    /storage record archive\/data\/1 is missing/,
    'missing storage',
  );
  throwsClean(
    () => readPth(fakePth({ pickle: pkl, storages: { '0': f32bytes(W) }, omit: ['data.pkl'] })),
    /no <archive>\/data.pkl/,
    'missing data.pkl',
  );
});

test('inconsistent checkpoints: storage sizes, views past the storage, unknown storage types', () => {
  const mk = (t: FakeTensor, storage: Uint8Array) =>
    fakePth({ pickle: stateDictPickle([['x', t]]), storages: { '0': storage } });
  throwsClean(
    () => readPth(mk({ storage: 'FloatStorage', key: '0', numel: 8, offset: 0, size: [6], stride: [1] }, f32bytes(W))),
    /holds 24 bytes but the pickle declares 8/,
    'numel',
  );
  throwsClean(
    () => readPth(mk({ storage: 'FloatStorage', key: '0', numel: 6, offset: 2, size: [6], stride: [1] }, f32bytes(W))),
    /reaches element 7 of a 6-element storage/,
    'offset',
  );
  throwsClean(
    () =>
      readPth(
        mk({ storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [3, 3], stride: [1, 3] }, f32bytes(W)),
      ),
    /reaches element 8/,
    'stride',
  );
  throwsClean(
    () =>
      readPth(
        mk({ storage: 'ComplexFloatStorage', key: '0', numel: 6, offset: 0, size: [6], stride: [1] }, f32bytes(W)),
      ),
    /torch.ComplexFloatStorage/,
    'storage type',
  );
  throwsClean(
    () =>
      readPth(
        mk(
          { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [1 << 20, 1 << 20], stride: [0, 0] },
          f32bytes(W),
        ),
      ),
    /implausibly large/,
    'broadcast bomb',
  );
  throwsClean(
    () =>
      readPth(
        mk(
          { storage: 'FloatStorage', key: '../../etc/passwd', numel: 6, offset: 0, size: [6], stride: [1] },
          f32bytes(W),
        ),
      ),
    /not a plain record name/,
    'key',
  );
});

test('legacy (pre-1.6) and other non-zip files are refused, saying what they are', () => {
  const legacy = new PickleBuilder()
    .proto(2)
    .op(0x8a)
    .bytes([10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
    .op(0x2e)
    .build();
  throwsClean(() => readPth(legacy), /legacy \(pre-1\.6, non-zip\) torch\.save checkpoint.*Re-save/, 'legacy pickle');
  const tar = new Uint8Array(1024);
  tar.set(new TextEncoder().encode('ustar'), 257);
  throwsClean(() => readPth(tar), /legacy tar-format/, 'tar');
  throwsClean(() => readPth(new TextEncoder().encode('hello world')), /not a PyTorch checkpoint/, 'text');
  throwsClean(() => readPth(new Uint8Array(0)), /not a PyTorch checkpoint.*truncated/, 'empty');
  throwsClean(() => convertCheckpoint(legacy), /legacy/, 'convert legacy');
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile pickles: each asks to run something; the reader must refuse by name and nothing may run.

test('pickles asking for os.system / builtins.eval / exec are refused by name, and nothing runs', () => {
  const marker = path.join(os.tmpdir(), `sr3-pwned-${process.pid}-${Date.now()}`);
  const g = globalThis as Record<string, unknown>;
  const evil: Array<[string, Uint8Array, RegExp]> = [
    [
      'os.system via GLOBAL',
      new PickleBuilder().proto(2).global('os', 'system').unicode(`touch ${marker}`).op(0x85).reduce().stop().build(),
      /"os\.system"/,
    ],
    [
      'posix.system',
      new PickleBuilder()
        .proto(2)
        .global('posix', 'system')
        .unicode(`touch ${marker}`)
        .op(0x85)
        .reduce()
        .stop()
        .build(),
      /"posix\.system"/,
    ],
    [
      'builtins.eval via STACK_GLOBAL',
      new PickleBuilder()
        .proto(4)
        .stackGlobal('builtins', 'eval')
        .unicode('globalThis.__sr3_pwned = 1')
        .op(0x85)
        .reduce()
        .stop()
        .build(),
      /"builtins\.eval"/,
    ],
    [
      'builtins.exec',
      new PickleBuilder().proto(2).global('builtins', 'exec').unicode('import os').op(0x85).reduce().stop().build(),
      /"builtins\.exec"/,
    ],
    [
      '__builtin__.eval (py2 name)',
      new PickleBuilder().proto(2).global('__builtin__', 'eval').unicode('1').op(0x85).reduce().stop().build(),
      /"__builtin__\.eval"/,
    ],
    [
      'subprocess.Popen inside a state_dict',
      (() => {
        const p = new PickleBuilder().proto(2).op(0x7d).mark().unicode('w');
        p.global('subprocess', 'Popen')
          .mark()
          .unicode('sh')
          .unicode('-c')
          .unicode(`touch ${marker}`)
          .op(0x6c)
          .op(0x85)
          .reduce();
        return p.op(0x75).stop().build();
      })(),
      /"subprocess\.Popen"/,
    ],
    [
      'torch.load (a torch global outside the allowlist)',
      new PickleBuilder().proto(2).global('torch', 'load').unicode('x').op(0x85).reduce().stop().build(),
      /"torch\.load"/,
    ],
    [
      'INST opcode',
      new PickleBuilder()
        .proto(2)
        .mark()
        .unicode(`touch ${marker}`)
        .op(0x69)
        .bytes(new TextEncoder().encode('os\nsystem\n'))
        .stop()
        .build(),
      /opcode INST/,
    ],
    [
      'OBJ opcode',
      new PickleBuilder().proto(2).mark().global('collections', 'OrderedDict').op(0x6f).stop().build(),
      /opcode OBJ/,
    ],
    [
      'NEWOBJ of an allowed class',
      new PickleBuilder().proto(2).global('collections', 'OrderedDict').op(0x29).op(0x81).stop().build(),
      /NEWOBJ/,
    ],
    [
      'REDUCE of a storage class',
      new PickleBuilder().proto(2).global('torch', 'FloatStorage').op(0x29).reduce().stop().build(),
      /cannot be called/,
    ],
    ['EXT1 opcode', new PickleBuilder().proto(2).op(0x82).bytes([1]).stop().build(), /opcode EXT1/],
  ];
  for (const [what, pkl, re] of evil) {
    const e = throwsClean(() => unpickle(pkl), re, what);
    assert.match(e.message, /^pickle: /, what);
    // and wrapped in a checkpoint, through the whole import
    throwsClean(() => readPth(fakePth({ pickle: pkl, storages: {} })), re, `${what} (in a .pth)`);
  }
  assert.not.ok(existsSync(marker), 'a command ran');
  assert.is(g.__sr3_pwned, undefined, 'code was evaluated');
});

test('malformed pickles: truncation, stack underflow, bad memo refs, garbage: clean errors', () => {
  const good = stateDictPickle([
    ['x', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [6], stride: [1] }],
  ]);
  for (let len = 0; len < good.length; len++) {
    throwsClean(() => unpickle(good.subarray(0, len)), /^pickle: /, `truncated at ${len}`);
  }
  throwsClean(() => unpickle(Uint8Array.from([0x80, 2, 0x52, 0x2e])), /stack underflow/, 'underflow');
  throwsClean(() => unpickle(Uint8Array.from([0x80, 2, 0x68, 7, 0x2e])), /memo entry 7 used before/, 'memo');
  throwsClean(() => unpickle(Uint8Array.from([0x80, 2, 0xff])), /unknown opcode 0xff/, 'garbage');
  throwsClean(() => unpickle(Uint8Array.from([0x80, 2, 0x4e, 0x4e, 0x2e])), /unbalanced/, 'two values');
  throwsClean(() => unpickle(Uint8Array.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f])), /truncated/, 'huge length');
  // a list of 300k items in one APPENDS must not blow the call stack
  const big = new PickleBuilder().proto(2).op(0x5d).mark();
  for (let i = 0; i < 300000; i++) big.op(0x4e);
  const list = unpickle(big.op(0x65).stop().build()) as { items: unknown[] };
  assert.is(list.items.length, 300000);
});

test('fuzz: flipped bytes in a pickle and in a whole checkpoint never crash or hang', () => {
  const rnd = lcg(987654321);
  const tensors: Array<[string, FakeTensor]> = [
    ['a', { storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1] }],
    ['b', { storage: 'HalfStorage', key: '1', numel: 4, offset: 1, size: [3], stride: [1] }],
  ];
  const pkl = stateDictPickle(tensors);
  const pth = fakePth({ pickle: pkl, storages: { '0': f32bytes(W), '1': new Uint8Array(8) } });
  const t0 = Date.now();
  let refused = 0;
  for (let it = 0; it < 600; it++) {
    const target = it % 2 === 0 ? pkl : pth;
    const f = target.slice();
    const flips = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] ^= 1 << Math.floor(rnd() * 8);
    try {
      if (target === pkl) unpickle(f);
      else readPth(f);
    } catch (e) {
      assert.ok(
        e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError),
        `crash: ${(e as Error).stack}`,
      );
      assert.match(
        (e as Error).message,
        /^(pickle|zip|checkpoint|not a PyTorch|this zip|this is a legacy)/,
        (e as Error).message,
      );
      refused++;
    }
  }
  assert.ok(refused > 300, `only ${refused} corruptions refused`);
  assert.ok(Date.now() - t0 < 5000, 'fuzz loop too slow');
});

test('the golden .pth truncated at many lengths, or with flipped bytes, is refused cleanly', () => {
  const bytes = fixture('tiny/model_gen.pth');
  const lengths = new Set([
    0,
    1,
    3,
    4,
    21,
    22,
    100,
    30000,
    bytes.length - 1,
    bytes.length - 21,
    bytes.length - 22,
    bytes.length - 23,
    bytes.length - 100,
  ]);
  for (let i = 1; i < 16; i++) lengths.add(Math.floor((bytes.length * i) / 16));
  for (const len of lengths)
    throwsClean(() => readPth(bytes.subarray(0, len)), /zip|truncated|not a PyTorch/, `length ${len}`);
  const original = readPth(bytes).tensors;
  const rnd = lcg(42);
  for (let it = 0; it < 24; it++) {
    const f = bytes.slice();
    // flip a byte in the pickle (start of the archive) or the directory (end), where structure lives
    const pos = it % 2 === 0 ? 40 + Math.floor(rnd() * 20000) : bytes.length - 1 - Math.floor(rnd() * 15000);
    f[pos] ^= 1 << Math.floor(rnd() * 8);
    let got: Map<string, { data: Uint8Array }> | undefined;
    try {
      got = readPth(f).tensors;
    } catch (e) {
      assert.ok(!(e instanceof TypeError) && !(e instanceof RangeError), `crash at ${pos}: ${(e as Error).stack}`);
      continue;
    }
    // accepted: the flip hit a field that carries no data (timestamps, attributes); the tensors must be intact
    for (const [k, t] of original)
      assert.ok(Buffer.from(got.get(k)!.data).equals(Buffer.from(t.data)), `flip at ${pos} changed ${k}`);
  }
});

test.run();
