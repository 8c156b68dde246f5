// `npx tsx bench/compare.ts FILE.jsonl...`: issue 6's table from JSON lines of `npm run bench -- --json` (any conv
// kernel) and of `python3 bench/torch_unet.py`, all measured in one run on one card. Prints Markdown.
import { readFileSync } from 'node:fs';

/** The reference's figures from ../shared/device/README.md (ms per U-Net forward; H100 eager, H200 CUDA graphs). */
const TARGETS: { model: string; size: number; batch: number; eager32: number; graph16: number }[] = [
  { model: '16->128', size: 128, batch: 1, eager32: 11.8, graph16: 3.53 },
  { model: '16->128', size: 128, batch: 8, eager32: 31.5, graph16: 7.0 },
  { model: '64->512', size: 512, batch: 1, eager32: 60.9, graph16: 20.2 },
];

interface Row {
  name: string;
  kind?: string;
  impl?: string;
  conv_kernel?: string;
  norm?: string;
  split_k?: number;
  tile?: string;
  dawn_extra?: string;
  attention?: string;
  prefetch?: boolean;
  batch_loads?: boolean;
  mma_subgroups?: number;
  mma_pad?: boolean;
  mma_tk?: number;
  device?: string;
  ms_per_step?: number;
  wall_ms_per_step?: number;
  encode_ms?: number;
  gflops?: number;
  ms?: number;
  images_per_s?: number;
  peak_bytes?: number;
  error?: string;
}

export function readRows(files: string[]): Row[] {
  const rows: Row[] = [];
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const t = line.trim();
      if (!t.startsWith('{')) continue;
      try {
        rows.push(JSON.parse(t) as Row);
      } catch {
        /* a truncated last line of an interrupted run */
      }
    }
  }
  return rows;
}

const fmt = (v: number | undefined) =>
  v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);

/**
 * A GEMM conv row with the inline gather: SR3_BATCH_LOADS=0, or a row from before the batched gather existed (no
 * batch_loads field; 4 subgroups a tensor-core workgroup then too).
 */
const inlineLoads = (r: Row) => r.batch_loads !== true && /^(tiled|mma|mma3|f16)$/.test(r.conv_kernel ?? '');

/**
 * One U-Net step: the GPU time from timestamp queries, or the wall time per step of back-to-back submissions where
 * that is lower. A step cannot take the GPU longer than the steps take end to end, yet on an H100 some timestamp
 * medians came out 2-3x the wall time (the samples, each one step followed by a read-back, caught the GPU at a low
 * clock; their minimum agreed with the wall time).
 */
export const stepMs = (r: Row): number | undefined =>
  r.ms_per_step === undefined ? undefined : Math.min(r.ms_per_step, r.wall_ms_per_step ?? Infinity);

export function table(rows: Row[]): string {
  const ours = rows.filter((r) => r.kind === 'unet' && r.ms_per_step !== undefined);
  const variant = (r: Row) =>
    `${r.conv_kernel ?? '?'}${r.split_k === 0 ? ' (no split-K)' : ''}${r.tile && r.tile !== 'auto' ? ` (${r.tile} tiles)` : ''}${r.dawn_extra ? ` (+${r.dawn_extra})` : ''}${r.attention && r.attention !== 'auto' ? ` (${r.attention} attention)` : ''}${r.prefetch === false ? ' (no prefetch)' : ''}${r.norm && r.norm !== 'auto' ? ` (${r.norm} norm)` : ''}${inlineLoads(r) ? ' (inline loads)' : ''}${(r.mma_subgroups ?? 4) === 4 && r.conv_kernel?.startsWith('mma') ? ' (4 subgroups)' : ''}${r.mma_pad && r.conv_kernel?.startsWith('mma') ? ' (padded tiles)' : ''}${r.mma_tk === 64 && r.conv_kernel?.startsWith('mma') ? ' (64-deep steps)' : ''}`;
  const kernels = [...new Set(ours.map(variant))];
  const torch = rows.filter((r) => r.impl && r.ms_per_step !== undefined);
  const impls = [...new Set(torch.map((r) => r.impl!))];
  const device = rows.find((r) => r.device)?.device ?? 'unknown device';
  const out: string[] = [];
  out.push(
    `Device: ${device}. ms per U-Net forward (one denoising step; GPU time, or the wall time of back-to-back steps where lower); lower is better.`,
    '',
  );
  const head = [
    'config',
    'batch',
    'target: eager fp32',
    'target: graph fp16',
    ...kernels.map((k) => `sr3-wgsl ${k}`),
    ...impls.map((i) => `torch ${i} (this run)`),
    'met',
  ];
  out.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`);
  for (const t of TARGETS) {
    const name = `unet ${t.model} ${t.size}x${t.size} b${t.batch}`;
    const mine = kernels.map((k) => {
      const r = ours.find((r) => r.name === name && variant(r) === k);
      return r && stepMs(r);
    });
    const theirs = impls.map((i) => torch.find((r) => r.name === `torch ${name}` && r.impl === i)?.ms_per_step);
    // the f32-accuracy paths: the tiled FMA kernel and the split tensor-core one ('mma3'), any of their variants
    const f32s = kernels
      .map((k, i) => [k, mine[i]] as const)
      .filter(([k, v]) => v !== undefined && /^(tiled|mma3)\b/.test(k)) as [string, number][];
    const f32 = f32s.sort((x, y) => x[1] - y[1])[0];
    const best = Math.min(...mine.filter((v): v is number => v !== undefined));
    const met: string[] = [];
    if (f32 !== undefined) met.push(`f32 (${f32[0]}) ${f32[1] < t.eager32 ? 'beats' : 'slower than'} eager fp32`);
    if (Number.isFinite(best)) met.push(best <= t.graph16 ? 'fastest <= graph fp16' : 'fastest > graph fp16');
    out.push(
      `| ${[t.model, t.batch, t.eager32, t.graph16, ...mine.map(fmt), ...theirs.map(fmt), met.join('; ') || '–'].join(' | ')} |`,
    );
  }
  const walls = ours.filter((r) => r.wall_ms_per_step !== undefined);
  if (walls.length) {
    out.push(
      '',
      '| U-Net (each step its own submission) | conv2d kernel | GPU ms/step | wall ms/step | CPU encode ms |',
      '| --- | --- | --- | --- | --- |',
    );
    for (const r of walls)
      out.push(
        `| ${r.name} | ${variant(r)} | ${fmt(r.ms_per_step)} | ${fmt(r.wall_ms_per_step)} | ${fmt(r.encode_ms)} |`,
      );
  }
  const kernelRows = rows.filter((r) => r.gflops !== undefined && r.kind !== 'unet');
  if (kernelRows.length) {
    out.push('', '| kernel | conv2d kernel | ms | GFLOP/s |', '| --- | --- | --- | --- |');
    for (const r of kernelRows)
      out.push(`| ${r.name} | ${variant(r)} | ${fmt(r.ms)} | ${r.gflops === null ? '–' : fmt(r.gflops)} |`);
  }
  const ups = rows.filter((r) => r.kind === 'upscale');
  if (ups.length) {
    out.push('', '| upscale | conv2d kernel | images/s |', '| --- | --- | --- |');
    for (const r of ups) out.push(`| ${r.name} | ${variant(r)} | ${r.images_per_s?.toFixed(3) ?? '–'} |`);
  }
  const failed = rows.filter((r) => r.error);
  if (failed.length) out.push('', 'Failed rows:', ...failed.map((r) => `- ${r.name} ${r.impl ?? ''}: ${r.error}`));
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const files = process.argv.slice(2);
  if (!files.length) {
    console.error('usage: npx tsx bench/compare.ts FILE.jsonl...');
    process.exitCode = 2;
  } else {
    console.log(table(readRows(files)));
  }
}
