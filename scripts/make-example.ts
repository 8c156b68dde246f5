// Makes the bundled example: a 128x128 crop of scikit-image's astronaut photo (NASA, public domain), downscaled 4x
// with the antialiased bicubic filter the bundled model was trained with -> examples/astronaut-32.png (the input of
// the README's quick start) and examples/astronaut-128-hr.png (the ground truth, for comparison).
// Usage: npx tsx scripts/make-example.ts <path to skimage astronaut.png> (see ../shared/data/fetch-photos.sh)
import { imageToTensors, tensorsToImage } from '../engine/image.ts';
import { BICUBIC_TORCH_AA, Resampler } from '../engine/resample.ts';
import { openDevice } from '../engine/node/device.ts';
import { readPng, writePng, type Image } from '../engine/node/png.ts';

const src = process.argv[2];
if (!src) throw new Error('usage: npx tsx scripts/make-example.ts <astronaut.png>');
const img = await readPng(src);
const [x0, y0, S] = [176, 56, 128];
const crop = new Uint8Array(S * S * 3);
for (let y = 0; y < S; y++)
  for (let x = 0; x < S; x++)
    for (let c = 0; c < 3; c++)
      crop[(y * S + x) * 3 + c] = img.data[((y0 + y) * img.width + x0 + x) * img.channels + c];
const hr: Image = { width: S, height: S, channels: 3, bitDepth: 8, data: crop };
const ctx = await openDevice();
const rs = await Resampler.create(ctx);
const t = imageToTensors(hr, 3).color;
const inp = ctx.upload(t.data);
const out = ctx.buffer(3 * 32 * 32 * 4);
ctx.run([
  rs.downscale({ input: inp, output: out, batch: 1, channels: 3, inH: S, inW: S, factor: 4, kernel: BICUBIC_TORCH_AA }),
]);
const lr = await ctx.read(out, 3 * 32 * 32 * 4);
await writePng('examples/astronaut-128-hr.png', hr);
await writePng(
  'examples/astronaut-32.png',
  tensorsToImage({ channels: 3, height: 32, width: 32, data: lr }, null, { channels: 3, bitDepth: 8 }) as Image,
);
ctx.destroy();
console.log('wrote examples/astronaut-32.png and examples/astronaut-128-hr.png');
