// Resampling and pixel conversion kernels on NCHW float32 tensors (host side: engine/resample.ts).
//
// Two bicubic methods, one thread per output element, any input/output sizes (align_corners = false):
// - RESIZE_INTERP_WGSL: PyTorch F.interpolate(mode='bicubic', antialias=False): 4x4 taps at
//   real = scale (o + 0.5) - 0.5, Keys' cubic with parameter a (PyTorch: -0.75), indices clamped to the border
//   (replicate). Unnormalised weights (they sum to 1 exactly in real arithmetic).
// - RESIZE_FILTER_WGSL: the PIL / PyTorch-antialias filter: support 2 max(scale, 1) around center = scale (o + 0.5),
//   taps [xmin, xmax) cut at the borders, weights cubic((x + 0.5 - center) / max(scale, 1)) normalised to sum 1.
//   Upscaling this is PIL's Image.resize(BICUBIC); downscaling it antialiases (PyTorch antialias=True, PIL reduce).
// Both take an optional clamp of the result to [-1, 1] (override CLAMP).
import { uniformLayout } from './uniform.ts';

/**
 * The resize's uniform (shaders/uniform.ts): planes = batch * channels, total = planes * outH * outW, element
 * offsets into the buffers, the scales in / out, and Keys' cubic parameter a.
 */
export const RESIZE_UNIFORM = uniformLayout('P', {
  planes: 'u32',
  inH: 'u32',
  inW: 'u32',
  outH: 'u32',
  outW: 'u32',
  total: 'u32',
  inOff: 'u32',
  outOff: 'u32',
  scaleY: 'f32',
  scaleX: 'f32',
  a: 'f32',
});

const INDEX = /* wgsl */ `
const WG: u32 = 256u;

// The output element of this thread (2D grid folded: x first, up to 65535 groups per dimension).
fn flat(g: vec3u, nwg: vec3u) -> u32 {
  return g.x + g.y * (nwg.x * WG);
}
`;

const RESIZE_HEAD = /* wgsl */ `
${RESIZE_UNIFORM.wgsl}

override CLAMP: bool = false;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
${INDEX}
// Keys' cubic convolution kernel, |x| < 1 and 1 <= |x| < 2 pieces.
fn cc1(x: f32) -> f32 { return ((p.a + 2.0) * x - (p.a + 3.0)) * x * x + 1.0; }
fn cc2(x: f32) -> f32 { return ((p.a * x - 5.0 * p.a) * x + 8.0 * p.a) * x - 4.0 * p.a; }

fn store(i: u32, v: f32) {
  if (CLAMP) { dst[p.outOff + i] = clamp(v, -1.0, 1.0); } else { dst[p.outOff + i] = v; }
}
`;

export const RESIZE_INTERP_WGSL = /* wgsl */ `
${RESIZE_HEAD}
// PyTorch's guard_index_and_lambda: index = min(floor(real), size - 1), t = clamp(real - index, 0, 1).
fn src_index(o: u32, scale: f32, size: u32) -> vec2f {
  let real = scale * (f32(o) + 0.5) - 0.5;
  let i = min(floor(real), f32(size) - 1.0);
  return vec2f(i, clamp(real - i, 0.0, 1.0));
}

fn weights(t: f32) -> vec4f {
  return vec4f(cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(g, nwg);
  if (i >= p.total) { return; }
  let ox = i % p.outW;
  let oy = (i / p.outW) % p.outH;
  let plane = i / (p.outW * p.outH);
  let sy = src_index(oy, p.scaleY, p.inH);
  let sx = src_index(ox, p.scaleX, p.inW);
  let wy = weights(sy.y);
  let wx = weights(sx.y);
  let iy = i32(sy.x);
  let ix = i32(sx.x);
  let base = p.inOff + plane * p.inH * p.inW;
  let maxY = i32(p.inH) - 1;
  let maxX = i32(p.inW) - 1;
  var acc = 0.0;
  for (var j = 0; j < 4; j++) {
    let y = u32(clamp(iy - 1 + j, 0, maxY));
    let row = base + y * p.inW;
    var r = 0.0;
    for (var k = 0; k < 4; k++) {
      let x = u32(clamp(ix - 1 + k, 0, maxX));
      r += wx[k] * src[row + x];
    }
    acc += wy[j] * r;
  }
  store(i, acc);
}
`;

export const RESIZE_FILTER_WGSL = /* wgsl */ `
${RESIZE_HEAD}
fn filt(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 1.0) { return cc1(ax); }
  if (ax < 2.0) { return cc2(ax); }
  return 0.0;
}

// [xmin, xmax), the center and 1/filterscale of output o (PIL's precompute_coeffs; truncation toward zero as C's
// (int) cast, then cut at the borders).
struct Win { lo: i32, hi: i32, center: f32, inv: f32 }
fn window(o: u32, scale: f32, size: u32) -> Win {
  let fs = max(scale, 1.0);
  let support = 2.0 * fs;
  let center = scale * (f32(o) + 0.5);
  let lo = max(i32(center - support + 0.5), 0);
  let hi = min(i32(center + support + 0.5), i32(size));
  return Win(lo, hi, center, 1.0 / fs);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(g, nwg);
  if (i >= p.total) { return; }
  let ox = i % p.outW;
  let oy = (i / p.outW) % p.outH;
  let plane = i / (p.outW * p.outH);
  let wy = window(oy, p.scaleY, p.inH);
  let wx = window(ox, p.scaleX, p.inW);
  let base = p.inOff + plane * p.inH * p.inW;
  var sumX = 0.0;
  for (var x = wx.lo; x < wx.hi; x++) { sumX += filt((f32(x) - wx.center + 0.5) * wx.inv); }
  var sumY = 0.0;
  var acc = 0.0;
  for (var y = wy.lo; y < wy.hi; y++) {
    let w = filt((f32(y) - wy.center + 0.5) * wy.inv);
    sumY += w;
    let row = base + u32(y) * p.inW;
    var r = 0.0;
    for (var x = wx.lo; x < wx.hi; x++) {
      r += filt((f32(x) - wx.center + 0.5) * wx.inv) * src[row + u32(x)];
    }
    acc += w * r;
  }
  let norm = sumX * sumY;
  store(i, select(0.0, acc / norm, norm != 0.0));
}
`;

/**
 * Pixels to a tensor: packed little-endian u8 (or u16) samples, interleaved HWC with `inC` per pixel, B images one
 * after another -> NCHW f32 with outC channels, channel c read from input channel (map >> 8c) & 255 (so gray -> RGB is
 * map 0x000000, RGBA -> RGB 0x020100, its alpha 0x03). Values v / 127.5 - 1 (u8) or v / 32767.5 - 1 (u16).
 */
/** Its uniform: total = B * outC * H * W, bits 8 or 16. */
export const TO_TENSOR_UNIFORM = uniformLayout('Q', {
  H: 'u32',
  W: 'u32',
  inC: 'u32',
  outC: 'u32',
  map: 'u32',
  total: 'u32',
  bits: 'u32',
  outOff: 'u32',
});

export const PIXELS_TO_TENSOR_WGSL = /* wgsl */ `
${TO_TENSOR_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> px: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> q: Q;
${INDEX}
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(g, nwg);
  if (i >= q.total) { return; }
  let hw = q.H * q.W;
  let pix = i % hw;
  let c = (i / hw) % q.outC;
  let b = i / (hw * q.outC);
  let sc = (q.map >> (8u * c)) & 255u;
  let k = (b * hw + pix) * q.inC + sc;
  var v: f32;
  if (q.bits == 16u) {
    v = f32((px[k >> 1u] >> (16u * (k & 1u))) & 0xFFFFu) / 32767.5 - 1.0;
  } else {
    v = f32((px[k >> 2u] >> (8u * (k & 3u))) & 0xFFu) / 127.5 - 1.0;
  }
  dst[q.outOff + i] = v;
}
`;

/**
 * A tensor to pixels: NCHW f32 in [-1, 1] -> packed u8 (or u16) interleaved HWC with outC samples per pixel, sample c
 * from channel m = (map >> 8c) & 255 of tensor A (m < 4) or channel m - 4 of tensor B (m >= 4; e.g. an upscaled
 * alpha). As the reference's tensor2img: clamp to [-1, 1], (x + 1) / 2, times 255 (65535), round half to even.
 * One thread per output u32 word.
 */
/** Its uniform: samples = B * H * W * outC, the u32 words to write, bits 8 or 16, the channels of A and B. */
export const TO_PIXELS_UNIFORM = uniformLayout('R', {
  H: 'u32',
  W: 'u32',
  outC: 'u32',
  map: 'u32',
  samples: 'u32',
  words: 'u32',
  bits: 'u32',
  cA: 'u32',
  cB: 'u32',
  offA: 'u32',
  offB: 'u32',
});

export const TENSOR_TO_PIXELS_WGSL = /* wgsl */ `
${TO_PIXELS_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> ta: array<f32>;
@group(0) @binding(1) var<storage, read> tb: array<f32>;
@group(0) @binding(2) var<storage, read_write> px: array<u32>;
@group(0) @binding(3) var<uniform> r: R;
${INDEX}
fn sample_at(k: u32) -> f32 {
  let hw = r.H * r.W;
  let pixel = k / r.outC;
  let c = k % r.outC;
  let b = pixel / hw;
  let pos = pixel % hw;
  let m = (r.map >> (8u * c)) & 255u;
  var v: f32;
  if (m < 4u) { v = ta[r.offA + (b * r.cA + m) * hw + pos]; } else { v = tb[r.offB + (b * r.cB + (m - 4u)) * hw + pos]; }
  return (clamp(v, -1.0, 1.0) + 1.0) * 0.5;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let w = flat(g, nwg);
  if (w >= r.words) { return; }
  var word = 0u;
  if (r.bits == 16u) {
    for (var j = 0u; j < 2u; j++) {
      let k = 2u * w + j;
      if (k < r.samples) { word = word | (u32(round(sample_at(k) * 65535.0)) << (16u * j)); }
    }
  } else {
    for (var j = 0u; j < 4u; j++) {
      let k = 4u * w + j;
      if (k < r.samples) { word = word | (u32(round(sample_at(k) * 255.0)) << (8u * j)); }
    }
  }
  px[w] = word;
}
`;
