// WGSL pieces that kernels of several ops share, as TypeScript that writes them into each kernel's text (a WGSL
// function cannot take a storage buffer as an argument, so a shared write is generated per buffer).

/**
 * `dst[o] = v`, or `dst[o] += v` where the uniform's accumulate flag is set: the writers of gradients, whose
 * destination adds the contributions of a tensor's consumers (skip connections, residuals, the shared embedding).
 */
export function writeOrAddWgsl(dst: string, o: string, v: string): string {
  return `if (p.accumulate != 0u) { ${dst}[${o}] = ${dst}[${o}] + ${v}; } else { ${dst}[${o}] = ${v}; }`;
}

/**
 * The entry point of an elementwise kernel, opened: 256-wide workgroups on the 2-D grid that engine/ops/common.ts
 * grid256 makes (counts past a dimension's 65535 workgroups folded into y), and `index`, this invocation's flat index.
 */
export function flatMain256Wgsl(index = 'i'): string {
  return /* wgsl */ `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let ${index} = (wg.y * nw.x + wg.x) * 256u + li;`;
}
