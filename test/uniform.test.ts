// A uniform layout declared once (shaders/uniform.ts): the WGSL struct and the packed bytes agree field by field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CONV_UNIFORM } from '../shaders/conv2d.ts';
import { uniformLayout } from '../shaders/uniform.ts';

test('the struct lists the fields in order, four a row, padded to 16 bytes', () => {
  const L = uniformLayout('Q', { n: 'u32', scale: 'f32', shift: 'i32', m: 'u32', k: 'u32' });
  assert.is(L.bytes, 32);
  assert.is(
    L.wgsl,
    'struct Q {\n  n: u32, scale: f32, shift: i32, m: u32,\n  k: u32, _pad0: u32, _pad1: u32, _pad2: u32,\n}',
  );
  assert.is(uniformLayout('E', { a: 'u32' }).bytes, 16);
});

test('pack writes each field at its place, by name, in its type', () => {
  const L = uniformLayout('Q', { n: 'u32', scale: 'f32', shift: 'i32', m: 'u32', k: 'u32' });
  const buf = L.pack({ k: 7, m: 0xffffffff, shift: -3, scale: 0.125, n: 5 });
  assert.is(buf.byteLength, 32);
  const u = new Uint32Array(buf);
  assert.equal(
    [u[0], new Float32Array(buf)[1], new Int32Array(buf)[2], u[3], u[4], u[5]],
    [5, 0.125, -3, 0xffffffff, 7, 0],
  );
});

test('pack refuses a value its field cannot hold, naming the kernel and the field', () => {
  const L = uniformLayout('Q', { n: 'u32', scale: 'f32', shift: 'i32' });
  assert.throws(
    () => L.pack({ n: -1, scale: 1, shift: 0 }, 'conv 3'),
    /conv 3: uniform field n = -1 is out of u32 range/,
  );
  assert.throws(() => L.pack({ n: 1.5, scale: 1, shift: 0 }), /Q: uniform field n = 1.5 is out of u32 range/);
  assert.throws(
    () => L.pack({ n: 0, scale: Number.NaN, shift: 0 }),
    /uniform field scale = NaN is not a finite number/,
  );
  assert.throws(
    () => L.pack({ n: 0, scale: 1, shift: 2 ** 31 }),
    /uniform field shift = 2147483648 is out of i32 range/,
  );
});

test('the conv uniform: 17 fields and split-K chunk, 80 bytes, the struct every conv kernel declares', () => {
  assert.is(CONV_UNIFORM.bytes, 80);
  assert.match(CONV_UNIFORM.wgsl, /^struct P \{\n {2}B: u32, C1: u32, C2: u32, Hin: u32,\n/);
  assert.match(CONV_UNIFORM.wgsl, /kChunk: u32, hasEmb: u32, hasRes: u32, _pad0: u32,\n\}$/);
});

test.run();
