// Where the time before the first step goes: the quick start (`sr3 upscale examples/astronaut-32.png`) run with an
// empty Mesa shader cache and again with the cache it left (cold, then warm, back to back), each in a fresh process,
// with the breakdown: module loading, device, model, pipeline creation (Dawn's WGSL translation and the driver's
// pipeline object), the first use of each pipeline (where lavapipe compiles with LLVM), parameter packing and upload,
// the first step and the later ones. Measured figures go in bench/README.md.
//
//   npx tsx bench/cold-start.ts [--steps N] [--sampler s] [--input f.png] [--runs R] [--cli] [--json]
//   npx tsx bench/cold-start.ts --count     # only the pipelines: created, and run by the upscale (seconds, no steps)
//
// --cli also times the CLI line itself (`node bin/sr3.js upscale ... -o tmp.png`), cold and warm, as a user sees it.
// The cold runs get a new MESA_SHADER_CACHE_DIR under the system's temporary folder (Mesa 25 honours it; it is
// removed at the end). Dawn keeps no shader cache of its own in the Node binding: its creation times are the same
// cold and warm.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    steps: { type: 'string' },
    sampler: { type: 'string' },
    input: { type: 'string', default: 'examples/astronaut-32.png' },
    runs: { type: 'string', default: '1' },
    cli: { type: 'boolean' },
    json: { type: 'boolean' },
    child: { type: 'boolean' },
    count: { type: 'boolean' },
  },
});

interface Breakdown {
  modulesMs: number;
  deviceMs: number;
  modelMs: number;
  imageMs: number;
  packMs: number;
  uploadMs: number;
  /** from upscaleTensor's call to the first compile of the warm-up: plan, packing, upload, pipeline creation */
  buildMs: number;
  pipelines: number;
  createMs: number;
  /** the warm-up: the first (empty) dispatch of each pipeline */
  compileMs: number;
  firstStepMs: number;
  laterStepMs: number;
  steps: number;
  totalMs: number;
  /**
   * CPU seconds of the whole process (every thread: lavapipe compiles and runs in it) over the same phases: on a
   * shared machine they move much less with the load than the wall clock does
   */
  cpu: { start: number; build: number; compile: number; firstStep: number; laterStep: number; total: number };
  slowest: { label: string; createMs: number; firstDispatchMs: number | null }[];
  byLabel: Record<string, { n: number; createMs: number; compileMs: number }>;
}

/** The pipelines an upscale creates and the ones its steps run, without compiling or running any (stops at warmUp). */
async function count(): Promise<void> {
  const { openDevice } = await import('../engine/node/device.ts');
  const { openModel } = await import('../engine/node/model.ts');
  const { readImage } = await import('../engine/node/image-io.ts');
  const { imageToTensors } = await import('../engine/image.ts');
  const { upscaleTensor } = await import('../engine/upscale.ts');
  const { DEFAULT_MODEL } = await import('../engine/node/upscale.ts');
  const ctx = await openDevice();
  const model = await openModel(DEFAULT_MODEL);
  const { color } = imageToTensors(await readImage(values.input!), model.config.out_channel);
  let used = -1;
  const stop = new Error('stop');
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let buildMs = 0;
  let buildCpu = 0;
  try {
    await upscaleTensor(ctx, model, color, {
      steps: values.steps ? Number(values.steps) : undefined,
      sampler: values.sampler as never,
      onPrepare: (_d, n) => {
        used = n;
        buildMs = performance.now() - t0;
        const c = process.cpuUsage(cpu0);
        buildCpu = (c.user + c.system) / 1000;
        throw stop;
      },
    });
  } catch (e) {
    if (e !== stop) throw e;
  }
  const by = new Map<string, number>();
  for (const p of ctx.pipelineLog) by.set(p.label, (by.get(p.label) ?? 0) + 1);
  console.log(
    `${ctx.pipelineLog.length} pipelines created, ${used} of them run by the upscale (the rest: generators' unused entry points)`,
  );
  console.log(
    `building them (and packing, uploading the parameters): ${s(buildMs)} wall, ${s(buildCpu)} CPU; load ${loadavg()[0].toFixed(1)}`,
  );
  for (const [k, n] of [...by].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(3)}  ${k}`);
  ctx.destroy();
}

async function child(): Promise<void> {
  const modulesStart = performance.now();
  const { openDevice } = await import('../engine/node/device.ts');
  const { openModel } = await import('../engine/node/model.ts');
  const { readImage } = await import('../engine/node/image-io.ts');
  const { imageToTensors } = await import('../engine/image.ts');
  const { upscaleTensor, conditionRecipe, paddedSize } = await import('../engine/upscale.ts');
  const { DEFAULT_MODEL } = await import('../engine/node/upscale.ts');
  const { planUNet, packParams } = await import('../engine/unet-plan.ts');
  const modulesMs = performance.now(); // since the process started (performance.timeOrigin), node's own start included
  void modulesStart;
  const cpuNow = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };

  let t = performance.now();
  const ctx = await openDevice();
  const deviceMs = performance.now() - t;
  t = performance.now();
  const model = await openModel(DEFAULT_MODEL);
  const modelMs = performance.now() - t;
  t = performance.now();
  const img = await readImage(values.input!);
  const { color } = imageToTensors(img, model.config.out_channel);
  const imageMs = performance.now() - t;

  // packing and uploading the parameters on their own (upscaleTensor does the same inside its build)
  const { scale } = conditionRecipe(model);
  const [Hp, Wp] = paddedSize(model, img.height * scale, img.width * scale, scale);
  t = performance.now();
  const flat = packParams(planUNet(model.config, 1, Hp, Wp, true), (n) => model.param(n));
  const packMs = performance.now() - t;
  t = performance.now();
  const pbuf = ctx.upload(flat, 'bench.params');
  await ctx.sync();
  const uploadMs = performance.now() - t;
  pbuf.destroy();

  const cpuStart = cpuNow();
  const t0 = performance.now();
  let prepStart = 0;
  let prepEnd = 0;
  let cpuPrepStart = 0;
  let cpuPrepEnd = 0;
  const stepAt: number[] = [];
  const cpuStep: number[] = [];
  await upscaleTensor(ctx, model, color, {
    steps: values.steps ? Number(values.steps) : undefined,
    sampler: values.sampler as never,
    seed: 0,
    onPrepare: (d, n) => {
      if (d === 0) [prepStart, cpuPrepStart] = [performance.now(), cpuNow()];
      if (d === n) [prepEnd, cpuPrepEnd] = [performance.now(), cpuNow()];
    },
    onProgress: () => {
      stepAt.push(performance.now());
      cpuStep.push(cpuNow());
    },
  });
  const end = performance.now();
  const cpuEnd = cpuNow();
  const T = cpuStep.length;
  const log = ctx.pipelineLog;
  const byLabel: Breakdown['byLabel'] = {};
  for (const p of log) {
    const k = p.label.replace(/_\d+x\d+$/, '');
    byLabel[k] ??= { n: 0, createMs: 0, compileMs: 0 };
    const e = byLabel[k];
    e.n++;
    e.createMs += p.createMs;
    e.compileMs += p.firstDispatchMs ?? 0;
  }
  const b: Breakdown = {
    modulesMs,
    deviceMs,
    modelMs,
    imageMs,
    packMs,
    uploadMs,
    buildMs: (prepStart || prepEnd || stepAt[0]) - t0,
    pipelines: log.length,
    createMs: log.reduce((a, p) => a + p.createMs, 0),
    compileMs: prepEnd - prepStart,
    firstStepMs: stepAt[0] - (prepEnd || t0),
    laterStepMs: stepAt.length > 1 ? (stepAt[stepAt.length - 1] - stepAt[0]) / (stepAt.length - 1) : 0,
    steps: stepAt.length,
    totalMs: end,
    cpu: {
      start: cpuStart,
      build: cpuPrepStart - cpuStart,
      compile: cpuPrepEnd - cpuPrepStart,
      firstStep: cpuStep[0] - cpuPrepEnd,
      laterStep: T > 1 ? (cpuStep[T - 1] - cpuStep[0]) / (T - 1) : 0,
      total: cpuEnd,
    },
    slowest: [...log]
      .sort((a, b) => (b.firstDispatchMs ?? 0) + b.createMs - (a.firstDispatchMs ?? 0) - a.createMs)
      .slice(0, 8),
    byLabel,
  };
  ctx.destroy();
  console.log(`RESULT ${JSON.stringify(b)}`);
}

function runChild(cacheDir: string): Breakdown {
  const r = spawnSync(
    process.execPath,
    [...process.execArgv, resolve(import.meta.dirname, 'cold-start.ts'), '--child', ...childArgs()],
    {
      env: { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir },
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.status !== 0 || !line) throw new Error(`the measured run failed (status ${r.status}):\n${r.stderr}`);
  return JSON.parse(line.slice(7));
}

function childArgs(): string[] {
  const a = ['--input', values.input!];
  if (values.steps) a.push('--steps', values.steps);
  if (values.sampler) a.push('--sampler', values.sampler);
  return a;
}

function timeCli(cacheDir: string, out: string): number {
  const args = ['bin/sr3.js', 'upscale', values.input!, '-o', out, '--quiet'];
  if (values.steps) args.push('--steps', values.steps);
  if (values.sampler) args.push('--sampler', values.sampler);
  const t = performance.now();
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`sr3 upscale failed (status ${r.status}):\n${r.stderr}`);
  return performance.now() - t;
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function print(name: string, b: Breakdown, load: string): void {
  const before = b.modulesMs + b.deviceMs + b.modelMs + b.imageMs + b.buildMs + b.compileMs;
  console.log(
    `\n${name} (load before: ${load}): ${s(b.totalMs)} in all, ${s(before)} before the first step, ${b.pipelines} pipelines`,
  );
  const c = b.cpu;
  console.log(
    `  CPU time (all threads): ${s(c.total)} in all, ${s(c.start + c.build + c.compile)} before the first step`,
  );
  const rows: [string, number, number | null, string][] = [
    ['node start + module loading (tsx)', b.modulesMs, null, ''],
    ['device (Dawn, adapter, device)', b.deviceMs, null, ''],
    ['model file', b.modelMs, null, ''],
    [
      'input image',
      b.imageMs,
      null,
      `(CPU of the four rows above, with the parameter packing and upload measured apart: ${s(c.start)})`,
    ],
    [
      'build: plan, parameters, pipelines',
      b.buildMs,
      c.build,
      `pipeline creation ${s(b.createMs)} (${b.pipelines}, concurrent); packing ${s(b.packMs)} and upload ${s(b.uploadMs)} measured apart`,
    ],
    ['first use of each pipeline (LLVM on lavapipe)', b.compileMs, c.compile, ''],
    ['first step', b.firstStepMs, c.firstStep, ''],
    [
      `later steps (${b.steps - 1})`,
      b.laterStepMs * (b.steps - 1),
      c.laterStep * (b.steps - 1),
      `${s(b.laterStepMs)} each (CPU ${s(c.laterStep)})`,
    ],
  ];
  console.log(`  ${''.padEnd(48)} ${'wall'.padStart(8)}  ${'CPU'.padStart(8)}`);
  for (const [what, ms, cpu, note] of rows)
    console.log(`  ${what.padEnd(48)} ${s(ms).padStart(8)}  ${(cpu === null ? '' : s(cpu)).padStart(8)}  ${note}`);
  console.log('  by kernel (pipelines, creation, first use):');
  for (const [k, v] of Object.entries(b.byLabel).sort(
    (x, y) => y[1].compileMs + y[1].createMs - x[1].compileMs - x[1].createMs,
  )) {
    console.log(
      `    ${k.padEnd(28)} ${String(v.n).padStart(3)}  ${s(v.createMs).padStart(8)}  ${s(v.compileMs).padStart(8)}`,
    );
  }
}

if (values.child) {
  await child();
} else if (values.count) {
  await count();
} else {
  const runs = Number(values.runs);
  const load = () =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  const rows: Record<string, unknown>[] = [];
  for (let r = 0; r < runs; r++) {
    const dir = mkdtempSync(join(tmpdir(), 'sr3-cold-'));
    try {
      const l1 = load();
      const cold = runChild(join(dir, 'mesa'));
      const l2 = load();
      const warm = runChild(join(dir, 'mesa'));
      let cli: { cold: number; warm: number; load: string } | undefined;
      if (values.cli) {
        const l3 = load();
        const c = timeCli(join(dir, 'cli-mesa'), join(dir, 'out.png'));
        cli = { cold: c, warm: timeCli(join(dir, 'cli-mesa'), join(dir, 'out.png')), load: l3 };
      }
      if (values.json) rows.push({ run: r, cold, warm, cli, load: [l1, l2] });
      else {
        print(`cold (empty shader cache), run ${r + 1}`, cold, l1);
        print(`warm (the cache the cold run left), run ${r + 1}`, warm, l2);
        if (cli)
          console.log(
            `\nthe CLI line (sr3 upscale ${values.input}), load before ${cli.load}: cold ${s(cli.cold)}, warm ${s(cli.warm)}`,
          );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (values.json) for (const r of rows) console.log(JSON.stringify(r));
}
