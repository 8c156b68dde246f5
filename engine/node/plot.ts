// A loss-curve PNG without a plotting library: axes, a light raw curve, a smoothed curve (log-scale y).
import type { Image } from './png.ts';

export function plotLoss(points: { step: number; loss: number }[], width = 720, height = 360): Image {
  const data = new Uint8Array(width * height * 3).fill(255);
  const px = (x: number, y: number, rgb: [number, number, number]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    data.set(rgb, (Math.round(y) * width + Math.round(x)) * 3);
  };
  const line = (x0: number, y0: number, x1: number, y1: number, rgb: [number, number, number]) => {
    const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    for (let i = 0; i <= n; i++) px(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, rgb);
  };
  const L = 50;
  const R = width - 15;
  const T = 15;
  const Bm = height - 35;
  line(L, T, L, Bm, [0, 0, 0]);
  line(L, Bm, R, Bm, [0, 0, 0]);
  const pts = points.filter((p) => Number.isFinite(p.loss) && p.loss > 0);
  if (pts.length < 2) return { width, height, channels: 3, bitDepth: 8, data };
  const lo = Math.log10(Math.min(...pts.map((p) => p.loss)));
  const hi = Math.log10(Math.max(...pts.map((p) => p.loss)));
  const s0 = pts[0].step;
  const s1 = pts[pts.length - 1].step;
  const X = (s: number) => L + ((s - s0) / Math.max(1, s1 - s0)) * (R - L);
  const Y = (v: number) => Bm - ((Math.log10(v) - lo) / Math.max(1e-9, hi - lo)) * (Bm - T);
  // decade grid lines
  for (let d = Math.ceil(lo); d <= Math.floor(hi); d++)
    for (let x = L; x < R; x += 4) px(x, Y(10 ** d), [200, 200, 200]);
  for (let i = 1; i < pts.length; i++)
    line(X(pts[i - 1].step), Y(pts[i - 1].loss), X(pts[i].step), Y(pts[i].loss), [170, 200, 235]);
  let ema = pts[0].loss;
  let prev = { x: X(pts[0].step), y: Y(ema) };
  const a = Math.min(0.5, 20 / pts.length);
  for (const p of pts.slice(1)) {
    ema = (1 - a) * ema + a * p.loss;
    const cur = { x: X(p.step), y: Y(ema) };
    line(prev.x, prev.y, cur.x, cur.y, [20, 60, 160]);
    line(prev.x, prev.y + 1, cur.x, cur.y + 1, [20, 60, 160]);
    prev = cur;
  }
  return { width, height, channels: 3, bitDepth: 8, data };
}
