// Where the time before the first step goes: the quick start (`sr3 upscale examples/astronaut-32.png`) run with an
// empty Mesa shader cache and again with the cache it left (cold, then warm, back to back), each in a fresh process,
// with the breakdown: module loading, device, model, pipeline creation (Dawn's WGSL translation and the driver's
// pipeline object), the first use of each pipeline (where lavapipe compiles with LLVM), parameter packing and upload,
// the first step and the later ones. Measured figures go in bench/README.md.
//
//   npx tsx bench/cold-start.ts [--steps N] [--sampler s] [--input f.png] [--runs R] [--cli] [--json]
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
  slowest: { label: string; createMs: number; firstDispatchMs: number | null }[];
  byLabel: Record<string, { n: number; createMs: number; compileMs: number }>;
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

  const t0 = performance.now();
  let prepStart = 0;
  let prepEnd = 0;
  const stepAt: number[] = [];
  await upscaleTensor(ctx, model, color, {
    steps: values.steps ? Number(values.steps) : undefined,
    sampler: values.sampler as never,
    seed: 0,
    onPrepare: (d, n) => {
      if (d === 0) prepStart = performance.now();
      if (d === n) prepEnd = performance.now();
    },
    onProgress: () => stepAt.push(performance.now()),
  });
  const end = performance.now();
  const log = ctx.pipelineLog;
  const byLabel: Breakdown['byLabel'] = {};
  for (const p of log) {
    const k = p.label.replace(/_\d+x\d+$/, '');
    const e = (byLabel[k] ??= { n: 0, createMs: 0, compileMs: 0 });
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
    slowest: [...log].sort((a, b) => (b.firstDispatchMs ?? 0) + b.createMs - (a.firstDispatchMs ?? 0) - a.createMs).slice(0, 8),
    byLabel,
  };
  ctx.destroy();
  console.log(`RESULT ${JSON.stringify(b)}`);
}

function runChild(cacheDir: string): Breakdown {
  const r = spawnSync(process.execPath, [...process.execArgv, resolve(import.meta.dirname, 'cold-start.ts'), '--child', ...childArgs()], {
    env: { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
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
  const r = spawnSync(process.execPath, args, { env: { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sr3 upscale failed (status ${r.status}):\n${r.stderr}`);
  return performance.now() - t;
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function print(name: string, b: Breakdown, load: string): void {
  const before = b.modulesMs + b.deviceMs + b.modelMs + b.imageMs + b.buildMs + b.compileMs;
  console.log(`\n${name} (load before: ${load}): ${s(b.totalMs)} in all, ${s(before)} before the first step, ${b.pipelines} pipelines`);
  const rows: [string, number, string][] = [
    ['node start + module loading (tsx)', b.modulesMs, ''],
    ['device (Dawn, adapter, device)', b.deviceMs, ''],
    ['model file', b.modelMs, ''],
    ['input image', b.imageMs, ''],
    ['build: plan, parameters, pipelines', b.buildMs, `of which pipeline creation ${s(b.createMs)} (${b.pipelines}); packing ${s(b.packMs)} and upload ${s(b.uploadMs)} measured apart`],
    ['first use of each pipeline (LLVM on lavapipe)', b.compileMs, ''],
    ['first step', b.firstStepMs, ''],
    [`later steps (${b.steps - 1})`, b.laterStepMs * (b.steps - 1), `${s(b.laterStepMs)} each`],
  ];
  for (const [what, ms, note] of rows) console.log(`  ${what.padEnd(48)} ${s(ms).padStart(8)}  ${note}`);
  console.log('  by kernel (pipelines, creation, first use):');
  for (const [k, v] of Object.entries(b.byLabel).sort((x, y) => y[1].compileMs + y[1].createMs - x[1].compileMs - x[1].createMs)) {
    console.log(`    ${k.padEnd(28)} ${String(v.n).padStart(3)}  ${s(v.createMs).padStart(8)}  ${s(v.compileMs).padStart(8)}`);
  }
}

if (values.child) {
  await child();
} else {
  const runs = Number(values.runs);
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
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
        if (cli) console.log(`\nthe CLI line (sr3 upscale ${values.input}), load before ${cli.load}: cold ${s(cli.cold)}, warm ${s(cli.warm)}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (values.json) for (const r of rows) console.log(JSON.stringify(r));
}
