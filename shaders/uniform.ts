// A kernel's uniform declared once: the field names and types, from which both the WGSL struct (in the shader's text)
// and the host's packer (by field name, engine/kernels*.ts) come, so the two cannot drift apart. The struct is padded
// to a multiple of 16 bytes (a uniform buffer's size) with `_pad` fields.

export type UniformType = 'u32' | 'i32' | 'f32';

export interface UniformLayout<F extends Readonly<Record<string, UniformType>>> {
  /** the WGSL struct's name */
  readonly name: string;
  readonly fields: F;
  /** bytes of the packed uniform (a multiple of 16) */
  readonly bytes: number;
  /** `struct Name { a: u32, b: f32, ... }` */
  readonly wgsl: string;
  /**
   * The uniform's bytes, every field by name. A u32 field must be an integer in [0, 2^32), an i32 one an integer in
   * [-2^31, 2^31), an f32 one finite; the message names the kernel (`label`) and the field.
   */
  pack(values: { readonly [K in keyof F]: number }, label?: string): ArrayBuffer;
}

/** The layout of a uniform struct `name` with `fields` in declaration order, each a 4-byte scalar. */
export function uniformLayout<const F extends Readonly<Record<string, UniformType>>>(
  name: string,
  fields: F,
): UniformLayout<F> {
  const entries = Object.entries(fields) as [keyof F & string, UniformType][];
  const words = Math.max(4, Math.ceil(entries.length / 4) * 4);
  const pads = Array.from({ length: words - entries.length }, (_, i) => `_pad${i}: u32`);
  const decls = [...entries.map(([k, t]) => `${k}: ${t}`), ...pads];
  // four fields a line, as a 16-byte row of the buffer
  const rows: string[] = [];
  for (let i = 0; i < decls.length; i += 4) rows.push(`  ${decls.slice(i, i + 4).join(', ')},`);
  const wgsl = `struct ${name} {\n${rows.join('\n')}\n}`;
  return {
    name,
    fields,
    bytes: words * 4,
    wgsl,
    pack(values, label) {
      const buf = new ArrayBuffer(words * 4);
      const u = new Uint32Array(buf);
      const i32 = new Int32Array(buf);
      const f = new Float32Array(buf);
      entries.forEach(([k, t], i) => {
        const v = values[k];
        const bad = (what: string) => new Error(`${label ?? name}: uniform field ${k} = ${v} ${what}`);
        if (t === 'f32') {
          if (!Number.isFinite(v)) throw bad('is not a finite number');
          f[i] = v;
        } else if (t === 'u32') {
          if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw bad('is out of u32 range');
          u[i] = v;
        } else {
          if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw bad('is out of i32 range');
          i32[i] = v;
        }
      });
      return buf;
    },
  };
}
