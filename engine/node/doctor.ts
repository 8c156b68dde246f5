// `sr3 doctor`: what WebGPU device this machine gives the engine.
import { parseArgs } from 'node:util';
import { fmtBytes } from '../gpu.ts';
import { mmaSupport } from '../ops/conv2d.ts';
import { dawnFlagsFromEnv, openDevice } from './device.ts';

export async function doctorCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(
      'usage: sr3 doctor [--json]\n\nShows the WebGPU adapter Dawn finds, its backend, optional features and key limits.',
    );
    return 0;
  }
  const ctx = await openDevice();
  try {
    const l = ctx.limits;
    const limits = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    };
    const mma = await mmaSupport(ctx);
    const report = {
      adapter: ctx.adapter.description,
      vendor: ctx.adapter.vendor,
      architecture: ctx.adapter.architecture,
      backend: ctx.adapter.backend || (process.platform === 'linux' ? 'vulkan (Dawn on Linux)' : 'unknown'),
      software: ctx.adapter.isSoftware,
      features: ctx.features,
      subgroupSizes: [ctx.adapter.subgroupMinSize, ctx.adapter.subgroupMaxSize],
      subgroupMatrixConfigs: ctx.adapter.subgroupMatrixConfigs,
      convKernel: ctx.options.convKernel,
      // the code paths the engine takes (SR3_GPU_PATHS=1 takes the GPU ones on a software device)
      paths: ctx.options.paths,
      mixedPrecision: {
        f16: ctx.features.shaderF16 ? 'yes' : 'no: no shader-f16',
        mma: mma.ok
          ? `yes (subgroup size ${mma.subgroupSize}, ${mma.fragment}x${mma.fragment} fragments, '${mma.syntax}' spelling)`
          : `no: ${mma.reason}`,
        // f32 accuracy on the same subgroup matrices: it runs wherever mma does
        mma3: mma.ok ? 'yes (three f16 products a fragment)' : 'no: as mma',
      },
      limits,
      dawnFlags: dawnFlagsFromEnv(),
    };
    if (values.json) {
      console.log(JSON.stringify(report));
      return 0;
    }
    const yes = (b: boolean) => (b ? 'yes' : 'no');
    console.log(`adapter      ${report.adapter}${report.software ? '  (software device: expect slow kernels)' : ''}`);
    console.log(`vendor       ${report.vendor || '-'}  architecture ${report.architecture || '-'}`);
    console.log(`backend      ${report.backend}`);
    console.log(
      `software     ${yes(report.software)}${report.software !== (report.paths === 'software') ? `  (taking the ${report.paths} code paths: SR3_GPU_PATHS)` : ''}`,
    );
    console.log(
      `features     shader-f16 ${yes(ctx.features.shaderF16)}, subgroups ${yes(ctx.features.subgroups)}, ` +
        `timestamp-query ${yes(ctx.features.timestampQuery)}, subgroup-matrix ${yes(ctx.features.subgroupMatrix)}`,
    );
    if (report.subgroupSizes[1])
      console.log(`subgroups    ${report.subgroupSizes[0]}..${report.subgroupSizes[1]} invocations`);
    if (report.subgroupMatrixConfigs.length) {
      console.log(
        `sg matrices  ${report.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ')}`,
      );
    }
    console.log(`conv2d       ${report.convKernel} (set SR3_CONV_KERNEL=tiled|direct|f16|mma|mma3 to choose)`);
    console.log(`  f16 (mixed precision, FMAs)            ${report.mixedPrecision.f16}`);
    console.log(`  mma (mixed precision, tensor cores)    ${report.mixedPrecision.mma}`);
    console.log(`  mma3 (f32 accuracy, tensor cores)      ${report.mixedPrecision.mma3}`);
    console.log('limits');
    for (const [k, v] of Object.entries(limits)) {
      console.log(`  ${k.padEnd(34)} ${v}${k.includes('Size') && v >= 1024 ? `  (${fmtBytes(v)})` : ''}`);
    }
    console.log(`dawn flags   ${report.dawnFlags.join(' ') || '(none)'}`);
    // Mesa's version is the last "Mesa X.Y" in the llvmpipe description
    const mesa = /Mesa (\d+)\.(\d+)/.exec(report.adapter);
    if (report.software && mesa && Number(mesa[1]) < 26) {
      console.log(
        `hint         Mesa ${mesa[1]}.${mesa[2]}'s lavapipe: Mesa 26's runs these kernels about twice as fast, and has subgroup matrices;`,
      );
      console.log(
        '             bash scripts/lavapipe-coopmat.sh bin/sr3.js <command> runs on it without installing anything (README)',
      );
    }
    return 0;
  } finally {
    ctx.destroy();
  }
}
