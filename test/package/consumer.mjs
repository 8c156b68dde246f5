// A plain Node consumer of the installed package (no tsx, no TypeScript): one upscaler, two images of different sizes,
// the golden tiny model. Run by scripts/test-package.mjs inside the temporary install; prints one JSON line.
import { createUpscaler, decodePng, encodePng } from 'sr3-wgsl';

const [modelPath, configPath] = process.argv.slice(2);
function image(width, height, seed) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(((Math.sin(i * 0.37 + seed) + 1) / 2) * 255);
  return { width, height, channels: 3, bitDepth: 8, data };
}

const up = await createUpscaler({ model: modelPath, config: configPath, steps: 3, log: () => {} });
const out = [];
try {
  // pixels in, and PNG bytes in
  const a = await up.upscale(image(6, 5, 1), { seed: 4 });
  const b = await up.upscale(encodePng(image(8, 7, 2)), { seed: 4 });
  const again = await up.upscale(image(6, 5, 1), { seed: 4 });
  for (const r of [a, b]) {
    const png = decodePng(r.png());
    out.push({
      width: r.image.width,
      height: r.image.height,
      channels: r.image.channels,
      png: [png.width, png.height],
    });
  }
  out.push({ sameSeedSameImage: Buffer.compare(a.png(), again.png()) === 0 });
} finally {
  up.dispose();
}
console.log(JSON.stringify(out));
