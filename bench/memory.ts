// Memory soak benchmarks (not tests): native memory per device open/close cycle, and RSS and live GPU buffers over
// many upscales through one device and model. Figures go to bench/README.md ("Memory").
//
//   npx tsx bench/memory.ts cycles [N]          open and destroy the device N times (default 55), RSS every 5
//   npx tsx bench/memory.ts soak [N] [--every K] N upscales (default 200) of a 16x16 image with the golden tiny model
//                                                through one upscaler (createUpscaler: one device, one model), RSS,
//                                                heap and live GPU buffers every K (default 20); --direct calls
//                                                upscaleTensor without an upscaler (everything built per image)
// Run with node --expose-gc --import tsx so that every row is taken after a full garbage collection.
import { openDevice } from '../engine/node/device.ts';
import { upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { openModel } from '../engine/node/model.ts';
import { createUpscaler } from '../engine/node/api.ts';

const MiB = 2 ** 20;
const [mode = 'soak', nText] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const every = Number(process.argv[process.argv.indexOf('--every') + 1] || 0) || undefined;
const mem = () => {
  global.gc?.();
  const m = process.memoryUsage();
  return {
    rss_mib: +(m.rss / MiB).toFixed(1),
    heap_mib: +(m.heapUsed / MiB).toFixed(1),
    external_mib: +(m.external / MiB).toFixed(1),
  };
};

if (mode === 'cycles') {
  const n = Number(nText ?? 55);
  const rows: { cycle: number; rss_mib: number }[] = [];
  for (let i = 1; i <= n; i++) {
    const ctx = await openDevice();
    // a little work, so the device's queues and a pipeline exist
    const b = ctx.upload(new Float32Array(1024), 'cycle');
    await ctx.read(b);
    b.destroy();
    const live = ctx.liveBuffers().count;
    ctx.destroy();
    await new Promise((r) => setTimeout(r, 10));
    if (i === 1 || i % (every ?? 5) === 0) {
      const m = mem();
      rows.push({ cycle: i, rss_mib: m.rss_mib });
      console.log(JSON.stringify({ kind: 'cycle', cycle: i, ...m, gpu_buffers_at_destroy: live }));
    }
  }
  const [a, z] = [rows[0], rows[rows.length - 1]];
  console.log(
    JSON.stringify({
      kind: 'cycles',
      cycles: n,
      mib_per_cycle: +((z.rss_mib - a.rss_mib) / (z.cycle - a.cycle)).toFixed(3),
    }),
  );
} else {
  const n = Number(nText ?? 200);
  const k = every ?? 20;
  const ctx = await openDevice();
  const G = 'test/fixtures/golden/tiny';
  const direct = process.argv.includes('--direct');
  const model = await openModel(`${G}/model_gen.pth`, { config: `${G}/config.json`, log: () => {} });
  const up = direct ? undefined : await createUpscaler({ model, device: ctx, steps: 2 });
  const lr: Tensor3 = {
    channels: 3,
    height: 16,
    width: 16,
    data: Float32Array.from({ length: 768 }, (_, i) => Math.sin(i / 7) * 0.5),
  };
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) {
    if (up) await up.upscaleTensor(lr, { seed: i });
    else await upscaleTensor(ctx, model, lr, { steps: 2, seed: i });
    if (i === 1 || i % k === 0) {
      const live = ctx.liveBuffers();
      console.log(
        JSON.stringify({
          kind: 'soak',
          via: up ? 'createUpscaler' : 'upscaleTensor',
          upscales: i,
          ...mem(),
          gpu_buffers: live.count,
          gpu_mib: +(live.bytes / MiB).toFixed(2),
          s: +((performance.now() - t0) / 1000).toFixed(1),
        }),
      );
    }
  }
  up?.dispose();
  ctx.destroy();
}
