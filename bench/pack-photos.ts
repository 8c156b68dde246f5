// The photos a GPU slice trains and evaluates on, packed small enough to travel with the working tree (the device
// has no network, and the tree it gets must stay under 64 MiB):
//   <out>/train/*.jpg  every training photo resized (antialiased, triangle filter in linear 8-bit values) so that
//                      its long side is at most --long (default 512, about the evaluation photos' scale), JPEG quality 90
//   <out>/eval/*.png   each evaluation photo's centre crop (--crop, default 256, as `sr3 eval` takes it), lossless
// Usage: npx tsx bench/pack-photos.ts [--train /work/photos/train] [--eval /work/photos/eval] [--out .device-train/photos]
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import jpeg from 'jpeg-js';
import { readImage, type Image } from '../engine/node/image-io.ts';
import { writePng } from '../engine/node/png.ts';

/** Antialiased resize of an 8-bit image (triangle filter stretched by the reduction factor, as PIL's BILINEAR). */
export function resize(img: Image, W: number, H: number): Image {
  const C = img.channels;
  const pass = (src: Float64Array, sw: number, sh: number, dw: number, horizontal: boolean): Float64Array => {
    const n = horizontal ? sw : sh;
    const d = horizontal ? dw : dw; // output length along the axis
    const scale = n / d;
    const support = Math.max(1, scale);
    const other = horizontal ? sh : sw;
    const out = new Float64Array((horizontal ? d * sh : sw * d) * C);
    for (let o = 0; o < d; o++) {
      const centre = (o + 0.5) * scale;
      const lo = Math.max(0, Math.floor(centre - support));
      const hi = Math.min(n - 1, Math.ceil(centre + support));
      const ws: number[] = [];
      let sum = 0;
      for (let i = lo; i <= hi; i++) {
        const w = Math.max(0, 1 - Math.abs((i + 0.5 - centre) / support));
        ws.push(w);
        sum += w;
      }
      for (let k = 0; k < other; k++)
        for (let c = 0; c < C; c++) {
          let acc = 0;
          for (let i = lo; i <= hi; i++) {
            const idx = horizontal ? (k * sw + i) * C + c : (i * sw + k) * C + c;
            acc += ws[i - lo] * src[idx];
          }
          const oi = horizontal ? (k * d + o) * C + c : (o * sw + k) * C + c;
          out[oi] = acc / sum;
        }
    }
    return out;
  };
  const src = Float64Array.from(img.data);
  const h = pass(src, img.width, img.height, W, true);
  const v = pass(h, W, img.height, H, false);
  const data = new Uint8Array(W * H * C);
  for (let i = 0; i < data.length; i++) data[i] = Math.min(255, Math.max(0, Math.round(v[i])));
  return { width: W, height: H, channels: C, bitDepth: 8, data };
}

function centreCrop(img: Image, s: number): Image {
  const x0 = Math.floor((img.width - s) / 2);
  const y0 = Math.floor((img.height - s) / 2);
  const C = img.channels;
  const data = new Uint8Array(s * s * C);
  for (let y = 0; y < s; y++)
    data.set(img.data.subarray(((y0 + y) * img.width + x0) * C, ((y0 + y) * img.width + x0 + s) * C), y * s * C);
  return { width: s, height: s, channels: C, bitDepth: 8, data };
}

function listImages(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(png|jpe?g)$/i.test(f))
    .sort()
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

const { values } = parseArgs({
  options: {
    train: { type: 'string', default: '/work/photos/train' },
    eval: { type: 'string', default: '/work/photos/eval' },
    out: { type: 'string', default: '.device-train/photos' },
    long: { type: 'string', default: '512' },
    crop: { type: 'string', default: '256' },
    quality: { type: 'string', default: '90' },
  },
});
const long = Number(values.long);
const crop = Number(values.crop);
rmSync(values.out!, { recursive: true, force: true });
mkdirSync(join(values.out!, 'train'), { recursive: true });
mkdirSync(join(values.out!, 'eval'), { recursive: true });
let bytes = 0;
for (const f of listImages(values.train!)) {
  let img = await readImage(f);
  if (img.bitDepth !== 8) throw new Error(`${f}: 16-bit photos are not handled here`);
  const k = long / Math.max(img.width, img.height);
  if (k < 1) img = resize(img, Math.round(img.width * k), Math.round(img.height * k));
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++)
    for (let c = 0; c < 4; c++)
      rgba[4 * i + c] = c === 3 ? 255 : img.data[i * img.channels + Math.min(c, img.channels - 1)];
  const jpg = jpeg.encode({ width: img.width, height: img.height, data: rgba }, Number(values.quality)).data;
  writeFileSync(join(values.out!, 'train', `${basename(f, extname(f))}.jpg`), jpg);
  bytes += jpg.length;
}
for (const f of listImages(values.eval!)) {
  const img = await readImage(f);
  const s = Math.min(crop, Math.floor(Math.min(img.width, img.height) / 16) * 16);
  const file = join(values.out!, 'eval', `${basename(f, extname(f))}.png`);
  await writePng(file, centreCrop(img, s));
  bytes += statSync(file).size;
}
console.log(`packed ${values.out}: ${(bytes / 2 ** 20).toFixed(1)} MiB`);
