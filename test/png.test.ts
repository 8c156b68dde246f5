import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import pngjs from 'pngjs';
import {
  decodePng,
  encodePng,
  imageTo01,
  inspectPng,
  MAX_PNG_SIDE,
  PngError,
  readPng,
  readPngSync,
  to8Bit,
  writePng,
  writePngSync,
  type Image,
} from '../engine/node/png.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'sr3-png-test-'));

// A PNG built by hand (not by pngjs): any colour type and depth, optional PLTE/tRNS, rows given unfiltered.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}
function ihdr(w: number, h: number, depth: number, colorType: number): Uint8Array {
  const d = new Uint8Array(13);
  const dv = new DataView(d.buffer);
  dv.setUint32(0, w);
  dv.setUint32(4, h);
  d[8] = depth;
  d[9] = colorType;
  return d;
}
const SIG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
/** rows: each row's packed bytes (without the filter byte). */
function makePng(
  w: number,
  h: number,
  depth: number,
  colorType: number,
  rows: Uint8Array[],
  extra: Uint8Array[] = [],
): Uint8Array {
  const raw = concat(rows.map((r) => concat([Uint8Array.of(0), r])));
  return concat([
    SIG,
    chunk('IHDR', ihdr(w, h, depth, colorType)),
    ...extra,
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}
const be16 = (vals: number[]) => {
  const b = new Uint8Array(vals.length * 2);
  vals.forEach((v, i) => {
    new DataView(b.buffer).setUint16(2 * i, v);
  });
  return b;
};

function throwsPng(fn: () => unknown, re: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, PngError, `${(e as Error).message}`);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a PngError matching ${re}`);
}
async function rejectsPng(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, PngError, `${(e as Error).message}`);
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a PngError matching ${re}`);
}

test('reads 8-bit gray, gray+alpha, RGB, RGBA exactly (hand-made files)', () => {
  const w = 3;
  const h = 2;
  for (const [colorType, channels] of [
    [0, 1],
    [4, 2],
    [2, 3],
    [6, 4],
  ] as const) {
    const samples = Array.from({ length: w * h * channels }, (_, i) => (i * 37 + colorType) % 256);
    const rows = [0, 1].map((y) => Uint8Array.from(samples.slice(y * w * channels, (y + 1) * w * channels)));
    const img = decodePng(makePng(w, h, 8, colorType, rows), 'x.png');
    assert.equal([img.width, img.height, img.channels, img.bitDepth], [w, h, channels, 8]);
    assert.instance(img.data, Uint8Array);
    assert.equal(Array.from(img.data), samples, `colour type ${colorType}`);
  }
});

test('reads 16-bit gray, gray+alpha, RGB, RGBA exactly', () => {
  const w = 5; // odd
  const h = 3;
  for (const [colorType, channels] of [
    [0, 1],
    [4, 2],
    [2, 3],
    [6, 4],
  ] as const) {
    const samples = Array.from({ length: w * h * channels }, (_, i) => (i * 4099 + 65535 * (i === 0 ? 1 : 0)) % 65536);
    const rows = [0, 1, 2].map((y) => be16(samples.slice(y * w * channels, (y + 1) * w * channels)));
    const img = decodePng(makePng(w, h, 16, colorType, rows));
    assert.equal([img.channels, img.bitDepth], [channels, 16]);
    assert.instance(img.data, Uint16Array);
    assert.equal(Array.from(img.data), samples, `colour type ${colorType}`);
  }
});

/** An Adam7-interlaced PNG from interleaved samples (16-bit samples big-endian), every line unfiltered. */
function makeInterlaced(
  w: number,
  h: number,
  depth: 8 | 16,
  colorType: number,
  spp: number,
  samples: number[],
): Uint8Array {
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  const lines: Uint8Array[] = [];
  for (const [x0, y0, dx, dy] of passes) {
    for (let y = y0; y < h; y += dy) {
      const vals: number[] = [];
      for (let x = x0; x < w; x += dx) for (let c = 0; c < spp; c++) vals.push(samples[(y * w + x) * spp + c]);
      if (vals.length) lines.push(concat([Uint8Array.of(0), depth === 8 ? Uint8Array.from(vals) : be16(vals)]));
    }
  }
  const hd = ihdr(w, h, depth, colorType);
  hd[12] = 1;
  return concat([SIG, chunk('IHDR', hd), chunk('IDAT', deflateSync(concat(lines))), chunk('IEND', new Uint8Array(0))]);
}

test('interlaced (Adam7) 8-bit gray and 16-bit RGB, odd sizes', () => {
  const g = Array.from({ length: 5 * 7 }, (_, i) => (i * 29) % 256);
  const gi = decodePng(makeInterlaced(5, 7, 8, 0, 1, g));
  assert.equal([gi.width, gi.height, gi.channels], [5, 7, 1]);
  assert.equal(Array.from(gi.data), g);
  const rgb = Array.from({ length: 9 * 3 * 3 }, (_, i) => (i * 2311) % 65536);
  const ri = decodePng(makeInterlaced(9, 3, 16, 2, 3, rgb));
  assert.equal([ri.channels, ri.bitDepth], [3, 16]);
  assert.equal(Array.from(ri.data), rgb);
  const one = decodePng(makeInterlaced(1, 1, 8, 0, 1, [77]));
  assert.equal(Array.from(one.data), [77]);
});

test('palette (with and without tRNS), 1-bit gray and gray tRNS', () => {
  const plte = chunk('PLTE', Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]));
  const idx = [Uint8Array.from([0, 1, 2, 1]), Uint8Array.from([2, 2, 0, 0])];
  const p = decodePng(makePng(4, 2, 8, 3, idx, [plte]));
  assert.is(p.channels, 3);
  assert.equal(Array.from(p.data.subarray(0, 6)), [255, 0, 0, 0, 255, 0]);
  const pa = decodePng(makePng(4, 2, 8, 3, idx, [plte, chunk('tRNS', Uint8Array.from([0, 128]))]));
  assert.is(pa.channels, 4);
  assert.equal(Array.from(pa.data.subarray(0, 12)), [255, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255]);
  // 4-bit palette: two pixels a byte.
  const p4 = decodePng(makePng(3, 1, 4, 3, [Uint8Array.from([0x21, 0x00])], [plte]));
  assert.equal(Array.from(p4.data), [0, 0, 255, 0, 255, 0, 255, 0, 0]);
  // 1-bit gray, 10 pixels: 1011001110 -> scaled to 0/255.
  const g1 = decodePng(makePng(10, 1, 1, 0, [Uint8Array.from([0b10110011, 0b10000000])]));
  assert.equal([g1.channels, g1.bitDepth], [1, 8]);
  assert.equal(Array.from(g1.data), [255, 0, 255, 255, 0, 0, 255, 255, 255, 0]);
  // Gray with a tRNS colour: an alpha channel appears; pixels of that value are transparent.
  const gt = decodePng(makePng(3, 1, 8, 0, [Uint8Array.from([10, 20, 30])], [chunk('tRNS', be16([20]))]));
  assert.is(gt.channels, 2);
  assert.equal([gt.data[1], gt.data[3], gt.data[5]], [255, 0, 255]);
  assert.equal([gt.data[0], gt.data[4]], [10, 30]);
});

test('write -> read round trip for every channel count at 8 and 16 bits (odd sizes), sync and async', async () => {
  for (const bitDepth of [8, 16] as const) {
    for (const channels of [1, 2, 3, 4] as const) {
      const w = 7;
      const h = 5;
      const n = w * h * channels;
      const max = bitDepth === 8 ? 256 : 65536;
      const data = bitDepth === 8 ? new Uint8Array(n) : new Uint16Array(n);
      for (let i = 0; i < n; i++) data[i] = (i * 7919 + 13) % max;
      const img: Image = { width: w, height: h, channels, bitDepth, data };
      const f = path.join(dir, `rt-${bitDepth}-${channels}.png`);
      await writePng(f, img);
      const back = await readPng(f);
      assert.equal([back.width, back.height, back.channels, back.bitDepth], [w, h, channels, bitDepth]);
      assert.equal(Array.from(back.data), Array.from(data), `${channels} channels, ${bitDepth} bits`);
      writePngSync(f, img); // overwrite in place
      assert.equal(Array.from(readPngSync(f).data), Array.from(data));
      // The PNG's own header says what we wrote.
      const hd = inspectPng(readFileSync(f));
      assert.equal([hd.bitDepth, hd.colorType], [bitDepth, [0, 0, 4, 2, 6][channels]]);
    }
  }
  // A subarray view with an offset encodes its own samples only.
  const big = Uint16Array.from({ length: 20 }, (_, i) => i * 1000);
  const view = big.subarray(5, 11);
  const img = decodePng(encodePng({ width: 2, height: 1, channels: 3, bitDepth: 16, data: view }));
  assert.equal(Array.from(img.data), Array.from(view));
  // pngjs (an independent encoder) agrees on an RGBA file.
  const p = new pngjs.PNG({ width: 2, height: 2 });
  p.data.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  assert.equal(
    Array.from(decodePng(pngjs.PNG.sync.write(p)).data),
    Array.from({ length: 16 }, (_, i) => i + 1),
  );
});

test('helpers: [0, 1] floats and 16 -> 8 bits', () => {
  const img: Image = { width: 2, height: 1, channels: 1, bitDepth: 16, data: Uint16Array.from([0, 65535]) };
  assert.equal(Array.from(imageTo01(img)), [0, 1]);
  assert.equal(Array.from(to8Bit(img).data), [0, 255]);
  assert.equal(Array.from(to8Bit({ ...img, data: Uint16Array.from([257 * 100, 32896]) }).data), [100, 128]);
});

test('bad input: not a PNG, empty, truncated anywhere, 0x0, huge, corrupt', () => {
  const good = makePng(
    4,
    3,
    8,
    2,
    [0, 1, 2].map((y) => new Uint8Array(12).fill(y * 50)),
  );
  throwsPng(() => decodePng(new TextEncoder().encode('hello, not an image'), 'a.txt'), /a\.txt: not a PNG file/);
  throwsPng(() => decodePng(new Uint8Array(0), 'empty.png'), /empty\.png: not a PNG file \(the file is empty\)/);
  // JPEG magic.
  throwsPng(
    () => decodePng(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46]), 'j.jpg'),
    /not a PNG/,
  );
  for (let cut = 8; cut < good.length; cut += 3)
    throwsPng(() => decodePng(good.subarray(0, cut), 't.png'), /t\.png: truncated PNG/);
  throwsPng(() => decodePng(good.subarray(0, good.length - 1), 't.png'), /truncated PNG/);
  throwsPng(
    () => decodePng(makePng(0, 0, 8, 2, []), 'z.png'),
    /z\.png: the PNG is 0x0: an image needs at least one pixel/,
  );
  throwsPng(() => decodePng(makePng(5, 0, 8, 2, []), 'z.png'), /5x0/);
  // Huge: refused from the header alone, before any decoding (the data here is tiny).
  const huge = makePng(MAX_PNG_SIDE + 1, 1, 8, 2, [new Uint8Array(3)]);
  throwsPng(() => decodePng(huge, 'h.png'), /h\.png: the PNG is 16385x1, over the limit of 16384 pixels a side/);
  throwsPng(
    () => decodePng(makePng(10000, 10000, 8, 0, [new Uint8Array(1)]), 'h.png'),
    /10000x10000, over the limit.*crop or downscale/,
  );
  throwsPng(() => decodePng(good, 'small-limit.png', { maxSide: 3 }), /4x3, over the limit of 3/);
  // A flipped byte in the image data: the CRC catches it.
  const bad = Uint8Array.from(good);
  bad[bad.length - 20] ^= 0x5a;
  throwsPng(() => decodePng(bad, 'c.png'), /c\.png: corrupt PNG/);
  // Impossible header fields.
  throwsPng(() => decodePng(makePng(2, 2, 3, 2, [new Uint8Array(6), new Uint8Array(6)])), /RGB with bit depth 3/);
  throwsPng(() => decodePng(makePng(2, 2, 8, 5, [new Uint8Array(6), new Uint8Array(6)])), /colour type 5/);
  // Too little image data for the size claimed.
  throwsPng(() => decodePng(makePng(4, 3, 8, 2, [new Uint8Array(12)]), 'short.png'), /short\.png: corrupt PNG/);
});

test('bad files on disk and unwritable outputs: clear errors, no partial or temporary file left', async () => {
  await rejectsPng(readPng(path.join(dir, 'missing.png')), /cannot read .*missing\.png: no such file/);
  throwsPng(() => readPngSync(dir), /cannot read .*: it is a folder/);
  const txt = path.join(dir, 'notes.png');
  writeFileSync(txt, 'plain text');
  await rejectsPng(readPng(txt), /notes\.png: not a PNG file/);
  const img: Image = { width: 2, height: 2, channels: 3, bitDepth: 8, data: new Uint8Array(12).fill(7) };
  const nowhere = path.join(dir, 'no-such-folder', 'out.png');
  await rejectsPng(writePng(nowhere, img), /cannot write .*out\.png: its folder does not exist/);
  throwsPng(() => writePngSync(nowhere, img), /its folder does not exist/);
  // A path through a regular file.
  await rejectsPng(writePng(path.join(txt, 'out.png'), img), /cannot write .*: a part of the path is not a folder/);
  // The target is a folder: the temporary file is written, the rename fails, and the temporary file is removed.
  const sub = path.join(dir, 'taken');
  mkdirSync(path.join(sub, 'out.png'), { recursive: true });
  await rejectsPng(writePng(path.join(sub, 'out.png'), img), /cannot write .*out\.png/);
  throwsPng(() => writePngSync(path.join(sub, 'out.png'), img), /cannot write .*out\.png/);
  assert.equal(readdirSync(sub), ['out.png'], 'nothing left beside the target');
  // Invalid images are refused before any file is touched.
  const target = path.join(dir, 'never.png');
  await rejectsPng(writePng(target, { ...img, data: new Uint8Array(5) }), /needs 12 samples, got 5/);
  await rejectsPng(writePng(target, { ...img, width: 0 }), /0x2 image/);
  await rejectsPng(writePng(target, { ...img, bitDepth: 16 }), /must be a Uint16Array/);
  await rejectsPng(writePng(target, { ...img, channels: 5 as never }), /5 channels/);
  assert.not.ok(existsSync(target));
  // Overwriting an existing PNG with a good image replaces it whole.
  const ok = path.join(dir, 'ok.png');
  await writePng(ok, img);
  await writePng(ok, { ...img, data: new Uint8Array(12).fill(9) });
  assert.equal(Array.from((await readPng(ok)).data), new Array(12).fill(9));
  assert.equal(
    readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
  );
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
