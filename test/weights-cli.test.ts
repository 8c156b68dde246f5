// `sr3 convert` / `sr3 info`: real files in a temp folder; failures leave nothing behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertCommand, infoCommand } from '../weights-format/cli.ts';
import { readModelFile, writeFileAtomic } from '../weights-format/node.ts';
import { readSafetensors } from '../weights-format/index.ts';
import { PickleBuilder, fakePth } from './helpers/weights.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const golden = (p: string) => path.join(root, 'test/fixtures/golden', p);
const NATURAL = path.resolve(root, '../shared/reference/natural4x_gen.pth');

const dir = mkdtempSync(path.join(os.tmpdir(), 'sr3-weights-cli-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Run a command with console output captured. */
async function run(
  cmd: (argv: string[]) => Promise<number>,
  argv: string[],
): Promise<{ code: number; out: string; err: string; error?: Error }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await cmd(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } catch (e) {
    return { code: 1, out: out.join('\n'), err: err.join('\n'), error: e as Error };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('convert tiny with --norm-groups, then info: exact weights, sensible summary', async () => {
  const out = path.join(dir, 'tiny.safetensors');
  const r = await run(convertCommand, [golden('tiny/model_gen.pth'), '--norm-groups', '8', '-o', out]);
  assert.is(r.error, undefined, r.error?.message);
  assert.is(r.code, 0);
  assert.match(r.out, /wrote .*tiny\.safetensors: 162 tensors/);
  const m = await readModelFile(out);
  assert.equal(m.config.channel_mults, [1, 2, 2]);
  const gold = readSafetensors(new Uint8Array(readFileSync(golden('tiny/weights.safetensors')))).tensors;
  for (const [k, t] of m.tensors)
    assert.ok(Buffer.from(t.data).equals(Buffer.from(gold.get(`denoise_fn.${k}`)!.data)), k);
  const source = JSON.parse(m.metadata.source);
  assert.is(source.file, 'model_gen.pth');
  assert.match(source.sha256, /^[0-9a-f]{64}$/);

  const info = await run(infoCommand, [out]);
  assert.is(info.code, 0);
  assert.match(info.out, /sr3-wgsl v1/);
  assert.match(info.out, /inner_channel 16, channel_mults \[1, 2, 2\], res_blocks 1/);
  assert.match(info.out, /GroupNorm +8 groups/);
  assert.match(info.out, /attention +level 2 \(32 ch\)/);
  assert.match(info.out, /schedule +linear, 12 steps, 0\.0001 \.\. 0\.3/);
  const j = await run(infoCommand, [out, '--json']);
  const d = JSON.parse(j.out);
  assert.is(d.tensors, 162);
  assert.is(d.dtype, 'F32');
  assert.is(d.file_bytes, readFileSync(out).length);
});

test('convert with --config and --dtype f16; info on a .pth shows what conversion would make', async () => {
  const out = path.join(dir, 'g32-f16.safetensors');
  const r = await run(convertCommand, [
    golden('groups32/model_gen.pth'),
    '--config',
    golden('groups32/config.json'),
    '--dtype',
    'f16',
    '--scale',
    '4',
    '-o',
    out,
  ]);
  assert.is(r.error, undefined, r.error?.message);
  const m = await readModelFile(out);
  assert.is(m.dtype, 'F16');
  assert.is(m.config.image_size, 32);
  assert.is(m.condition?.scale, 4);
  const size = readFileSync(out).length;
  assert.ok(size < 3748684 * 0.55, `f16 file is ${size} bytes`);
  const info = await run(infoCommand, [golden('groups32/model_gen.pth')]);
  assert.is(info.code, 0);
  assert.match(info.out, /reference PyTorch checkpoint, not converted/);
  assert.match(info.out, /inner_channel 32, channel_mults \[1, 2\], res_blocks 2/);
});

test('natural4x reference checkpoint: convert and info', async () => {
  if (!existsSync(NATURAL)) {
    console.log(`  note: ${NATURAL} not present; skipped`);
    return;
  }
  const out = path.join(dir, 'natural4x.safetensors');
  const r = await run(convertCommand, [
    NATURAL,
    '--config',
    path.resolve(root, '../shared/reference/natural4x_config.json'),
    '-o',
    out,
  ]);
  assert.is(r.error, undefined, r.error?.message);
  const info = await run(infoCommand, [out]);
  assert.match(info.out, /300 tensors, 6,1\d\d,\d\d\d parameters, F32/);
  assert.match(info.out, /channel_mults \[1, 2, 4, 4\]/);
  assert.match(info.out, /attention +level 3 \(128 ch, 16px at image_size 128\)/);
  assert.match(info.out, /schedule +linear, 2000 steps, 0\.000001 \.\. 0\.01/);
  assert.match(info.out, /condition +4x, bicubic, a=-0\.75, clamped/);
  rmSync(out);
});

function assertNothingLeft(names: string[], what: string) {
  const left = readdirSync(dir).filter((f) => !names.includes(f));
  assert.equal(left, [], `${what}: left ${left.join(', ')}`);
}

test('bad inputs: a clear error, no output file, no temp file, an existing output untouched', async () => {
  const keep = readdirSync(dir);
  const good = path.join(dir, 'tiny.safetensors');
  const before = readFileSync(good);
  const truncated = path.join(dir, 'truncated.pth');
  writeFileSync(truncated, readFileSync(golden('tiny/model_gen.pth')).subarray(0, 500000));
  const evil = path.join(dir, 'evil.pth');
  const marker = path.join(dir, 'pwned');
  writeFileSync(
    evil,
    fakePth({
      pickle: new PickleBuilder()
        .proto(2)
        .global('os', 'system')
        .unicode(`touch ${marker}`)
        .op(0x85)
        .reduce()
        .stop()
        .build(),
      storages: {},
    }),
  );
  const legacy = path.join(dir, 'legacy.pth');
  writeFileSync(
    legacy,
    Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
  );
  const inputs = ['truncated.pth', 'evil.pth', 'legacy.pth'];
  const out = path.join(dir, 'out.safetensors');
  const cases: Array<[string[], RegExp]> = [
    [[truncated, '-o', out], /truncated\.pth: zip: .*truncated|corrupt/],
    [[evil, '-o', out], /evil\.pth: pickle: .*"os\.system".*refused/],
    [[legacy, '-o', out], /legacy \(pre-1\.6, non-zip\)/],
    [[path.join(dir, 'nope.pth'), '-o', out], /nope\.pth: no such file/],
    [[golden('tiny/model_gen.pth'), '-o', out], /default group count.*norm_groups 32 does not divide.*--norm-groups N/],
    [[golden('tiny/model_gen.pth'), '--norm-groups', '0', '-o', out], /--norm-groups must be a positive integer/],
    [[golden('tiny/model_gen.pth'), '--dtype', 'f8', '-o', out], /--dtype must be f32, f16 or bf16/],
    [
      [golden('tiny/model_gen.pth'), '--config', golden('groups32/config.json'), '-o', out],
      /options file does not describe/,
    ],
    [[golden('tiny/model_gen.pth')], /give the output file with -o/],
    [[golden('tiny/model_gen.pth'), '--bogus', '-o', out], /Unknown option '--bogus'/],
    [[truncated, '-o', truncated], /output path is the input file/],
    // an existing output stays as it was
    [[truncated, '-o', good], /zip/],
  ];
  for (const [argv, re] of cases) {
    const r = await run(convertCommand, argv);
    assert.ok(r.error, `${argv.join(' ')}: accepted`);
    assert.match(r.error!.message, re, `${argv.join(' ')}: ${r.error!.message}`);
    assert.not.ok(existsSync(out), `${argv.join(' ')}: left an output file`);
    assertNothingLeft([...keep, ...inputs], argv.join(' '));
  }
  assert.ok(readFileSync(good).equals(before), 'existing output changed');
  assert.not.ok(existsSync(marker), 'the evil pickle ran a command');
  const tinyInfo = await run(infoCommand, [golden('tiny/model_gen.pth'), '--norm-groups', '8', '--json']);
  assert.equal(JSON.parse(tinyInfo.out).config.channel_mults, [1, 2, 2]);
  const info = await run(infoCommand, [evil]);
  assert.match(info.error!.message, /"os\.system"/);
  for (const f of inputs) rmSync(path.join(dir, f));
});

test('writeFileAtomic: replaces the target in one step and cleans up when the write fails', async () => {
  const target = path.join(dir, 'atomic.bin');
  await writeFileAtomic(target, Uint8Array.from([1, 2, 3]));
  await writeFileAtomic(target, Uint8Array.from([4, 5]));
  assert.equal([...readFileSync(target)], [4, 5]);
  let err: Error | undefined;
  try {
    await writeFileAtomic(path.join(dir, 'no-such-dir', 'x.bin'), Uint8Array.from([1]));
  } catch (e) {
    err = e as Error;
  }
  assert.match(err?.message ?? '', /cannot write .*x\.bin/);
  assert.not.ok(
    readdirSync(dir).some((f) => f.endsWith('.tmp')),
    'temp file left',
  );
  // copying a model then converting over it keeps a loadable file
  copyFileSync(target, path.join(dir, 'atomic2.bin'));
  rmSync(target);
  rmSync(path.join(dir, 'atomic2.bin'));
});

test.run();
