import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ceilDiv, GpuError } from '../engine/gpu.ts';
import { device, rand, releaseDevice } from './helpers/device.ts';

const SAXPY = /* wgsl */ `
struct P { n: u32, a: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= p.n) { return; }
  y[g.x] = p.a * x[g.x] + sin(y[g.x]);
}`;

test('a WGSL kernel computes what TypeScript computes, element by element', async () => {
  const ctx = await device();
  const n = 1000; // not a multiple of the workgroup size
  const x = rand(n, 7);
  const y = rand(n, 8);
  const a = 1.5;
  const pipe = await ctx.pipeline(SAXPY, { label: 'saxpy' });
  const xb = ctx.upload(x);
  const yb = ctx.upload(y);
  const params = new ArrayBuffer(8);
  new Uint32Array(params, 0, 1)[0] = n;
  new Float32Array(params, 4, 1)[0] = a;
  const ub = ctx.uniform(params);
  ctx.run([{ pipeline: pipe, bindGroup: ctx.bind(pipe, [xb, yb, ub]), workgroups: [ceilDiv(n, 64)] }]);
  const out = await ctx.read(yb, n * 4);
  assert.is(out.length, n);
  for (let i = 0; i < n; i++) {
    const want = Math.fround(a * x[i]) + Math.sin(y[i]);
    assert.ok(Math.abs(out[i] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `element ${i}: ${out[i]} vs ${want}`);
  }
});

test('the context reports the adapter, its features and its raised limits', async () => {
  const ctx = await device();
  assert.type(ctx.adapter.description, 'string');
  assert.ok(ctx.adapter.description.length > 0);
  assert.type(ctx.features.shaderF16, 'boolean');
  // We ask for the adapter's limits: on every adapter we know, the storage binding is at least the 128 MiB default.
  assert.ok(ctx.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20);
  assert.ok(ctx.limits.maxComputeInvocationsPerWorkgroup >= 256);
});

test('a shader that does not compile throws with the compiler message and the line', async () => {
  const ctx = await device();
  const bad = `@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_thing + 1.0;\n}`;
  try {
    await ctx.pipeline(bad, { label: 'broken.wgsl' });
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, GpuError);
    const msg = (e as Error).message;
    assert.match(msg, /WGSL compile error in broken\.wgsl/);
    assert.match(msg, /broken\.wgsl:3:/);
    assert.match(msg, /undefined_thing/);
  }
  ctx.check(); // the error was captured by its scope, not left behind
});

test('a bad bind group surfaces as a thrown error, not a silent wrong result', async () => {
  const ctx = await device();
  const pipe = await ctx.pipeline(SAXPY, { label: 'saxpy' });
  const xb = ctx.upload(new Float32Array(4));
  // Too few bindings: a validation error, reported at the next check.
  ctx.device.pushErrorScope('validation');
  try {
    ctx.device.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: xb } }],
    });
  } catch {
    /* some implementations throw directly */
  }
  const err = await ctx.device.popErrorScope();
  assert.ok(err, 'expected a validation error');
  // Without a scope it lands in the uncaptured list and check() throws it.
  try {
    ctx.device.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: xb } }],
    });
  } catch {
    /* ignore */
  }
  let threw = false;
  try {
    await ctx.sync();
  } catch (e) {
    threw = true;
    assert.instance(e, GpuError);
  }
  assert.ok(threw, 'sync() should throw the uncaptured validation error');
});

test('buffers over the device limit are refused with a message that names the limit', async () => {
  const ctx = await device();
  assert.throws(() => ctx.buffer(ctx.limits.maxBufferSize + 1024, 'huge'), /maxBufferSize/);
});

test('warmUp runs each new pipeline once on no workgroups: progress per pipeline, nothing written, none twice', async () => {
  const ctx = await device();
  const n = 100;
  // sources of their own: the context caches pipelines by source, and the first test made SAXPY's
  const src = `${SAXPY}\n// warm-up test`;
  const a = await ctx.pipeline(src, { label: 'saxpy.warm' });
  const b = await ctx.pipeline(src.replace('sin(', 'cos('), { label: 'saxpy.cos' });
  assert.is(
    await ctx.pipeline(src.replace('sin(', 'cos('), { label: 'again' }),
    b,
    'the same source gives the cached pipeline',
  );
  const logged = ctx.pipelineLog.filter((p) => p.label.startsWith('saxpy.'));
  assert.is(logged.length, 2, 'two distinct pipelines logged');
  const xb = ctx.upload(rand(n, 3));
  const yb = ctx.upload(new Float32Array(n).fill(2));
  const params = new ArrayBuffer(8);
  new Uint32Array(params, 0, 1)[0] = n;
  new Float32Array(params, 4, 1)[0] = 1;
  const ub = ctx.uniform(params);
  const d = (p: GPUComputePipeline) => ({
    pipeline: p,
    bindGroup: ctx.bind(p, [xb, yb, ub]),
    workgroups: [ceilDiv(n, 64)] as [number],
  });
  const calls: [number, number][] = [];
  await ctx.warmUp([d(a), d(b), d(a)], (done, total) => calls.push([done, total]));
  assert.equal(calls, [
    [0, 2],
    [1, 2],
    [2, 2],
  ]);
  for (const p of logged)
    assert.ok(p.firstDispatchMs !== null && p.firstDispatchMs >= 0, `${p.label} has its first dispatch timed`);
  const y = await ctx.read(yb, n * 4);
  assert.ok(
    y.every((v) => v === 2),
    'an empty dispatch writes nothing',
  );
  const again: number[] = [];
  await ctx.warmUp([d(a), d(b)], (done) => again.push(done));
  assert.equal(again, [], 'pipelines already run are not run again');
});

test.after(releaseDevice);
test.run();
