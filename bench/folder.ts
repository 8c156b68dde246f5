// A folder through one upscaler against one CLI call per image (issue 15): N crops of the example's 128x128 original
// (32x32 each), upscaled with `sr3 upscale <dir> -o <out>` once, then with N separate `sr3 upscale <file> -o <png>`
// calls, same steps and seed; the outputs must be the same bit for bit. Prints the seconds of both and the ratio.
//   npx tsx bench/folder.ts [--images 10] [--steps 8] [--size 32]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodePng, readPngSync, type Image } from '../engine/node/png.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '10' },
    steps: { type: 'string', default: '8' },
    size: { type: 'string', default: '32' },
  },
});
const N = Number(values.images);
const steps = values.steps!;
const S = Number(values.size);
const src = readPngSync('examples/astronaut-128-hr.png');
const dir = mkdtempSync(join(tmpdir(), 'sr3-folder-bench-'));
const inDir = join(dir, 'in');
const outDir = join(dir, 'out');
const sepDir = join(dir, 'separate');
for (const d of [inDir, outDir, sepDir]) mkdirSync(d);

// N distinct crops on a grid over the original (offsets step by S/2 so they differ even when N > (128/S)^2)
const per = Math.floor((src.width - S) / (S / 2)) + 1;
for (let i = 0; i < N; i++) {
  const ox = (i % per) * (S / 2);
  const oy = Math.floor(i / per) * (S / 2);
  const data = new Uint8Array(S * S * src.channels);
  for (let y = 0; y < S; y++)
    data.set(
      src.data.subarray(
        ((oy + y) * src.width + ox) * src.channels,
        ((oy + y) * src.width + ox + S) * src.channels,
      ) as Uint8Array,
      y * S * src.channels,
    );
  const img: Image = { width: S, height: S, channels: src.channels, bitDepth: 8, data };
  writeFileSync(join(inDir, `crop${String(i).padStart(2, '0')}.png`), encodePng(img));
}

// Each command runs under /usr/bin/time, which also gives its CPU seconds (user + system, every thread of the child
// processes): on a busy machine the wall clock depends on the other jobs, the CPU time much less.
const timeFile = join(dir, 'time.txt');
const sr3 = (args: string[]): { wall: number; cpu: number } => {
  execFileSync(
    '/usr/bin/time',
    [
      '-o',
      timeFile,
      '-f',
      '%e %U %S',
      process.execPath,
      'bin/sr3.js',
      'upscale',
      ...args,
      '--steps',
      steps,
      '--seed',
      '0',
      '--quiet',
    ],
    { stdio: 'inherit' },
  );
  const [wall, user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { wall, cpu: user + sys };
};
const folder = sr3([inDir, '-o', outDir]);
const separate = { wall: 0, cpu: 0 };
for (let i = 0; i < N; i++) {
  const name = `crop${String(i).padStart(2, '0')}`;
  const t = sr3([join(inDir, `${name}.png`), '-o', join(sepDir, `${name}_sr4x.png`)]);
  separate.wall += t.wall;
  separate.cpu += t.cpu;
}
let same = 0;
for (let i = 0; i < N; i++) {
  const name = `crop${String(i).padStart(2, '0')}_sr4x.png`;
  if (Buffer.compare(readFileSync(join(outDir, name)), readFileSync(join(sepDir, name))) === 0) same++;
}
rmSync(dir, { recursive: true, force: true });
console.log(`${N} images ${S}x${S} -> ${4 * S}x${4 * S}, ${steps} steps:`);
console.log(
  `  one upscaler (sr3 upscale <dir>):  wall ${folder.wall.toFixed(1)} s (${(N / folder.wall).toFixed(3)} images/s), CPU ${folder.cpu.toFixed(1)} s`,
);
console.log(
  `  ${N} separate sr3 upscale calls:   wall ${separate.wall.toFixed(1)} s (${(N / separate.wall).toFixed(3)} images/s), CPU ${separate.cpu.toFixed(1)} s`,
);
console.log(
  `  separate / folder: wall ${(separate.wall / folder.wall).toFixed(2)}x, CPU ${(separate.cpu / folder.cpu).toFixed(2)}x; outputs identical: ${same}/${N}`,
);
if (same !== N) process.exitCode = 1;
