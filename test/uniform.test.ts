// A uniform layout declared once (shaders/uniform.ts): the WGSL struct and the packed bytes agree field by field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ADAM from '../shaders/adam.ts';
import {
  ROW_SOFTMAX_UNIFORM,
  ROW_SOFTMAX_WGSL,
  STRIDED_GEMM_UNIFORM,
  STRIDED_GEMM_WGSL,
} from '../shaders/attention_gemm.ts';
import { CONV_UNIFORM } from '../shaders/conv2d.ts';
import * as CB from '../shaders/conv2d_backward.ts';
import * as CBD from '../shaders/conv2d_backward_direct.ts';
import * as DIFF from '../shaders/diffusion.ts';
import { LINEAR_UNIFORM, LINEAR_WGSL, POSENC_UNIFORM, POSENC_WGSL } from '../shaders/embedding.ts';
import * as EB from '../shaders/embedding_backward.ts';
import * as GN from '../shaders/groupnorm.ts';
import * as GNB from '../shaders/groupnorm_backward.ts';
import * as LOSS from '../shaders/loss.ts';
import * as RS from '../shaders/resample.ts';
import * as RNG from '../shaders/rng.ts';
import * as TILES from '../shaders/tiles.ts';
import * as TRAIN from '../shaders/train.ts';
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

test('each kernel declares the struct of the layout its host packs', () => {
  const pairs: [string, { name: string; wgsl: string }, string][] = [
    ['loss', LOSS.LOSS_PARTIAL_UNIFORM, LOSS.LOSS_PARTIAL_WGSL],
    ['reduce', LOSS.REDUCE_FINAL_UNIFORM, LOSS.REDUCE_FINAL_WGSL],
    ['posenc', POSENC_UNIFORM, POSENC_WGSL],
    ['linear', LINEAR_UNIFORM, LINEAR_WGSL],
    ['linear dIn', EB.LINEAR_DIN_UNIFORM, EB.LINEAR_DIN_WGSL],
    ['linear dW', EB.LINEAR_DW_UNIFORM, EB.LINEAR_DW_WGSL],
    ['gn stats', GN.GN_STATS_UNIFORM, GN.groupNormStatsWgsl(true)],
    ['gn stats split', GN.GN_STATS_SPLIT_UNIFORM, GN.groupNormStatsSplitWgsl(false)],
    ['gn combine', GN.GN_STATS_COMBINE_UNIFORM, GN.GN_STATS_COMBINE_WGSL],
    ['gn backward', GNB.GN_BWD_UNIFORM, GNB.GN_BWD_REDUCE_WGSL],
    ['gn backward params', GNB.GN_BWD_UNIFORM, GNB.GN_BWD_PARAMS_WGSL],
    ['gn backward apply', GNB.GN_BWD_UNIFORM, GNB.GN_BWD_APPLY_WGSL],
    ['gn apply', GNB.GN_APPLY_UNIFORM, GNB.gnApplyWgsl(true)],
    ['conv dx', CB.CONV_DX_UNIFORM, CB.CONV2D_DX_WGSL],
    ['conv dw', CB.CONV_DW_UNIFORM, CB.CONV2D_DW_WGSL],
    ['split reduce', CB.SPLIT_REDUCE_UNIFORM, CB.SPLIT_REDUCE_WGSL],
    ['channel sum', CB.CHANNEL_SUM_UNIFORM, CB.CHANNEL_SUM_WGSL],
    ['channel sum direct', CB.CHANNEL_SUM_UNIFORM, CB.channelSumDirectWgsl(true)],
    ['flip', CB.FLIP_WEIGHTS_UNIFORM, CB.FLIP_WEIGHTS_WGSL],
    ['dw direct', CB.DW_DIRECT_UNIFORM, CB.convDwDirectWgsl(3)],
    ['add', CB.ADD_UNIFORM, CB.ADD_WGSL],
    ['dx weights', CBD.DX_WEIGHTS_UNIFORM, CBD.dxWeightsWgsl(3, 'stride2')],
    ['gemm', STRIDED_GEMM_UNIFORM, STRIDED_GEMM_WGSL],
    ['softmax', ROW_SOFTMAX_UNIFORM, ROW_SOFTMAX_WGSL],
    ['adam', ADAM.ADAM_UNIFORM, ADAM.ADAM_WGSL],
    ['sum of squares', ADAM.SUMSQ_PARTIAL_UNIFORM, ADAM.SUMSQ_PARTIAL_WGSL],
    ['clip', ADAM.CLIP_SCALE_UNIFORM, ADAM.CLIP_SCALE_WGSL],
    ['ema', ADAM.EMA_UNIFORM, ADAM.EMA_WGSL],
    ['step begin', DIFF.STEP_BEGIN_UNIFORM, DIFF.STEP_BEGIN_WGSL],
    ['step update', DIFF.STEP_UPDATE_UNIFORM, DIFF.STEP_UPDATE_WGSL],
    ['step counter', DIFF.COUNTER_STEP_UNIFORM, DIFF.COUNTER_STEP_WGSL],
    ['consistency', DIFF.CONSISTENCY_UNIFORM, DIFF.CONSISTENCY_WGSL],
    ['noisify', DIFF.NOISIFY_UNIFORM, DIFF.NOISIFY_WGSL],
    ['residual', TRAIN.RESIDUAL_UNIFORM, TRAIN.RESIDUAL_WGSL],
    ['blur', TRAIN.BLUR_UNIFORM, TRAIN.BLUR_WGSL],
    ['tile gather', TILES.TILE_UNIFORM, TILES.TILE_GATHER_WGSL],
    ['tile accumulate', TILES.TILE_UNIFORM, TILES.TILE_ACCUMULATE_WGSL],
    ['tile normalize', TILES.TILE_UNIFORM, TILES.TILE_NORMALIZE_WGSL],
    ['rng gaussian', RNG.RNG_UNIFORM, RNG.gaussianWgsl(false)],
    ['rng gaussian table', RNG.RNG_UNIFORM, RNG.gaussianWgsl(true)],
    ['rng raw', RNG.RNG_UNIFORM, RNG.PHILOX_RAW_WGSL],
    ['rng counter add', RNG.COUNTER_ADD_UNIFORM, RNG.COUNTER_ADD_WGSL],
    ['resize interp', RS.RESIZE_UNIFORM, RS.RESIZE_INTERP_WGSL],
    ['resize filter', RS.RESIZE_UNIFORM, RS.RESIZE_FILTER_WGSL],
    ['pixels to tensor', RS.TO_TENSOR_UNIFORM, RS.PIXELS_TO_TENSOR_WGSL],
    ['tensor to pixels', RS.TO_PIXELS_UNIFORM, RS.TENSOR_TO_PIXELS_WGSL],
  ];
  for (const [name, layout, code] of pairs) {
    assert.ok(code.includes(layout.wgsl), `${name}: the kernel does not declare its layout's struct`);
    // the layout's struct and no other uniform struct (resample's window struct Win is a function's return type)
    const uniforms = code.match(/var<uniform> \w+: (\w+);/g) ?? [];
    assert.equal(uniforms, [uniforms[0]], `${name}: one uniform binding`);
    assert.ok(uniforms[0]?.endsWith(`: ${layout.name};`), `${name}: the uniform binding has the layout's struct`);
    assert.is(code.split(`struct ${layout.name} {`).length - 1, 1, `${name}: one struct ${layout.name}`);
  }
});

test.run();
