#!/usr/bin/env node
// What a user does with the package, tested (npm run test:package; CI runs it): `npm pack` (prepack builds dist/),
// install the tarball into an empty folder with --omit=dev (--prefer-offline: from the local npm cache, which CI's
// `npm ci` fills), run `npx sr3 upscale` on the
// bundled example, upscale two images of different sizes through one upscaler from a plain `node` .mjs file with the
// golden tiny model, and typecheck a TypeScript consumer against the installed .d.ts. Prints the tarball's and the
// installed sizes. Leaves nothing behind (SR3_KEEP=1 keeps the temporary folder).
import { spawnSync } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
  copyFileSync,
  readFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(join(tmpdir(), 'sr3-package-'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const t0 = performance.now();
let failed = false;

function step(name) {
  console.log(`== ${name} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''}):\n${r.stdout}\n${r.stderr}`,
    );
  }
  return r;
}
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`   ok: ${what}`);
}
function duBytes(p) {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  let n = 0;
  for (const e of readdirSync(p)) n += duBytes(join(p, e));
  return n;
}
const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;

try {
  step('npm pack (prepack builds dist/)');
  const packed = JSON.parse(
    run(npm, ['pack', '--json', '--pack-destination', tmp], { cwd: root }).stdout.replace(/^[^[]*/s, ''),
  )[0];
  const tgz = join(tmp, packed.filename);
  const files = packed.files.map((f) => f.path);
  console.log(
    `   ${packed.filename}: ${mb(statSync(tgz).size)} packed, ${mb(packed.unpackedSize)} unpacked, ${files.length} files`,
  );
  check(
    files.includes('dist/engine/node/index.js') && files.includes('dist/engine/node/index.d.ts'),
    'the tarball has the compiled entry and its types',
  );
  check(
    !files.some((f) => f.startsWith('test/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))),
    'no tests, fixtures or TypeScript sources in the tarball',
  );

  step('install the tarball into an empty folder, --omit=dev, from the npm cache where it has them (--prefer-offline)');
  const app = join(tmp, 'app');
  run('mkdir', ['-p', app]);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'sr3-consumer', private: true, type: 'module' }, null, 2),
  );
  run(npm, ['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', tgz], { cwd: app });
  const installed = join(app, 'node_modules', 'sr3-wgsl');
  check(
    !existsSync(join(app, 'node_modules', 'tsx')) && !existsSync(join(app, 'node_modules', 'typescript')),
    'no devDependencies installed (tsx, typescript)',
  );
  console.log(
    `   installed: sr3-wgsl ${mb(duBytes(installed))}, node_modules in all ${mb(duBytes(join(app, 'node_modules')))}`,
  );

  step('npx sr3 upscale on the bundled example (2 steps)');
  const up = run(
    'npx',
    [
      '--no-install',
      'sr3',
      'upscale',
      join(installed, 'examples', 'astronaut-32.png'),
      '-o',
      'astronaut-128.png',
      '--steps',
      '2',
    ],
    { cwd: app },
  );
  check(existsSync(join(app, 'astronaut-128.png')), 'npx sr3 upscale wrote astronaut-128.png');
  const png = readFileSync(join(app, 'astronaut-128.png'));
  check(png.readUInt32BE(16) === 128 && png.readUInt32BE(20) === 128, 'it is 128x128');
  check(!/artificially reduced/.test(up.stderr), "Dawn's adapter-limit notes are not shown");

  step('a plain node .mjs: one upscaler, two images of different sizes, the golden tiny model');
  copyFileSync(join(root, 'test', 'package', 'consumer.mjs'), join(app, 'consumer.mjs'));
  const tiny = join(root, 'test', 'fixtures', 'golden', 'tiny');
  const res = JSON.parse(
    run(process.execPath, ['consumer.mjs', join(tiny, 'model_gen.pth'), join(tiny, 'config.json')], { cwd: app })
      .stdout.trim()
      .split('\n')
      .pop(),
  );
  check(
    res[0].width === 24 && res[0].height === 20 && res[0].png[0] === 24 && res[0].png[1] === 20,
    'a 6x5 image came back 24x20, pixels and PNG',
  );
  check(
    res[1].width === 32 && res[1].height === 28 && res[1].png[0] === 32 && res[1].png[1] === 28,
    'an 8x7 image (PNG bytes in) came back 32x28',
  );
  check(res[2].sameSeedSameImage === true, 'the same image and seed again through the same upscaler give the same PNG');

  step('typecheck a TypeScript consumer against the installed types');
  copyFileSync(join(root, 'test', 'package', 'consumer.ts'), join(app, 'consumer.ts'));
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          lib: ['ES2022', 'DOM'],
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
        },
        files: ['consumer.ts'],
      },
      null,
      2,
    ),
  );
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { cwd: app });
  check(true, 'consumer.ts typechecks (strict, NodeNext, no skipLibCheck)');
  console.log(`== package test passed in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
} catch (e) {
  failed = true;
  console.error(`error: ${e.message}`);
  console.error(`(the temporary folder ${tmp} is kept for a look)`);
} finally {
  if (!failed && process.env.SR3_KEEP !== '1') rmSync(tmp, { recursive: true, force: true });
  process.exitCode = failed ? 1 : 0;
}
