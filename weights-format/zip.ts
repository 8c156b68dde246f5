// A small, strict zip reader (stored and deflated entries, zip64) and a stored-only writer.
// PyTorch (>= 1.6) writes checkpoints as a zip of `<archive>/data.pkl`, `<archive>/data/<key>`, `<archive>/byteorder`...
// Pure TypeScript: decompression is injected (Node: zlib.inflateRawSync; browsers: DecompressionStream('deflate-raw')).

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Offset of the entry's data in the archive (after its local header). */
  dataOffset: number;
}

/** Inflate raw deflate data (no zlib/gzip wrapper). `expectedSize` is the size the archive promises. */
export type InflateRawSync = (data: Uint8Array, expectedSize: number) => Uint8Array;
export type InflateRaw = (data: Uint8Array, expectedSize: number) => Uint8Array | Promise<Uint8Array>;

let crcTable: Int32Array | undefined;
export function crc32(data: Uint8Array): number {
  let t = crcTable;
  if (!t) {
    t = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c;
    }
    crcTable = t;
  }
  let c = -1;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/** Read and validate the central directory. Every entry's local header and data range is checked against the file. */
export function readZipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const len = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number, what: string) => {
    const v = dv.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new Error(`zip: ${what} is impossibly large; the archive is corrupt`);
    return Number(v);
  };
  if (len < 22) throw new Error(`zip: the file is only ${len} bytes, too short for a zip archive: truncated`);

  // End of central directory: the last signature whose comment fits the file.
  let eocd = -1;
  for (let p = len - 22; p >= Math.max(0, len - 22 - 0xffff); p--) {
    if (u32(p) === 0x06054b50 && p + 22 + u16(p + 20) <= len) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) {
    throw new Error(
      'zip: no end-of-central-directory record: the archive is truncated or corrupt (re-download or re-save it)',
    );
  }
  if (u16(eocd + 4) !== 0 || u16(eocd + 6) !== 0) throw new Error('zip: multi-disk archives are not supported');
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== 0x07064b50) throw new Error('zip: zip64 locator missing; the archive is corrupt');
    const z = u64(loc + 8, 'zip64 record offset');
    if (z + 56 > len || u32(z) !== 0x06064b50)
      throw new Error('zip: zip64 end-of-central-directory record missing; the archive is corrupt');
    count = u64(z + 32, 'entry count');
    cdSize = u64(z + 40, 'central directory size');
    cdOffset = u64(z + 48, 'central directory offset');
  }
  if (cdOffset + cdSize > len)
    throw new Error('zip: the central directory lies outside the file: truncated or corrupt archive');
  if (count * 46 > cdSize)
    throw new Error(`zip: ${count} entries cannot fit a ${cdSize}-byte central directory; corrupt archive`);

  const entries = new Map<string, ZipEntry>();
  const dec = new TextDecoder('utf-8', { fatal: true });
  let p = cdOffset;
  const cdEnd = cdOffset + cdSize;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdEnd || u32(p) !== 0x02014b50)
      throw new Error(`zip: central directory entry ${i} is damaged; corrupt archive`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let csize = u32(p + 20);
    let size = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let local = u32(p + 42);
    const next = p + 46 + nameLen + extraLen + commentLen;
    if (next > cdEnd) throw new Error(`zip: central directory entry ${i} runs past the directory; corrupt archive`);
    let name: string;
    try {
      name = dec.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    } catch {
      throw new Error(`zip: entry ${i} has a name that is not UTF-8; corrupt archive`);
    }
    // zip64 extra field: the 64-bit values of the fields saturated above, in this order.
    if (size === 0xffffffff || csize === 0xffffffff || local === 0xffffffff) {
      let q = p + 46 + nameLen;
      const qEnd = q + extraLen;
      let found = false;
      while (q + 4 <= qEnd) {
        const id = u16(q);
        const sz = u16(q + 2);
        if (q + 4 + sz > qEnd) break;
        if (id === 0x0001) {
          let r = q + 4;
          const take = (what: string) => {
            if (r + 8 > q + 4 + sz)
              throw new Error(`zip: entry ${JSON.stringify(name)} has a short zip64 field; corrupt archive`);
            const v = u64(r, what);
            r += 8;
            return v;
          };
          if (size === 0xffffffff) size = take('entry size');
          if (csize === 0xffffffff) csize = take('compressed size');
          if (local === 0xffffffff) local = take('local header offset');
          found = true;
          break;
        }
        q += 4 + sz;
      }
      if (!found) throw new Error(`zip: entry ${JSON.stringify(name)} lacks its zip64 sizes; corrupt archive`);
    }
    if (flags & 1)
      throw new Error(`zip: entry ${JSON.stringify(name)} is encrypted; encrypted archives are not supported`);
    if (method !== 0 && method !== 8) {
      throw new Error(
        `zip: entry ${JSON.stringify(name)} uses compression method ${method}; only stored (0) and deflate (8) are supported`,
      );
    }
    if (method === 0 && csize !== size)
      throw new Error(`zip: stored entry ${JSON.stringify(name)} has differing sizes; corrupt archive`);
    if (local + 30 > len || u32(local) !== 0x04034b50) {
      throw new Error(
        `zip: the local header of ${JSON.stringify(name)} is missing or damaged: truncated or corrupt archive`,
      );
    }
    const lName = u16(local + 26);
    const lExtra = u16(local + 28);
    if (lName !== nameLen)
      throw new Error(`zip: local header of ${JSON.stringify(name)} disagrees with the directory; corrupt archive`);
    for (let k = 0; k < nameLen; k++) {
      if (bytes[local + 30 + k] !== bytes[p + 46 + k]) {
        throw new Error(`zip: local header of ${JSON.stringify(name)} names a different file; corrupt archive`);
      }
    }
    const dataOffset = local + 30 + lName + lExtra;
    if (dataOffset + csize > len)
      throw new Error(`zip: the data of ${JSON.stringify(name)} runs past the end of the file: truncated archive`);
    if (entries.has(name))
      throw new Error(`zip: entry ${JSON.stringify(name)} appears twice; refusing an ambiguous archive`);
    entries.set(name, { name, method, compressedSize: csize, size, crc32: crc, dataOffset });
    p = next;
  }
  return entries;
}

/** The raw (possibly compressed) bytes of an entry. */
export function entryRawData(bytes: Uint8Array, e: ZipEntry): Uint8Array {
  return bytes.subarray(e.dataOffset, e.dataOffset + e.compressedSize);
}

/** Check an entry's decompressed bytes against the size and CRC-32 the archive promises. */
export function checkEntryData(e: ZipEntry, data: Uint8Array): Uint8Array {
  if (!(data instanceof Uint8Array) || data.length !== e.size) {
    throw new Error(
      `zip: entry ${JSON.stringify(e.name)} decompressed to ${data?.length} bytes, expected ${e.size}; corrupt archive`,
    );
  }
  if (crc32(data) !== e.crc32)
    throw new Error(`zip: entry ${JSON.stringify(e.name)} fails its CRC-32 check; the file is corrupt`);
  return data;
}

/** Extract an entry synchronously (stored entries are views into `bytes`). */
export function extractEntry(bytes: Uint8Array, e: ZipEntry, inflate?: InflateRawSync): Uint8Array {
  const raw = entryRawData(bytes, e);
  if (e.method === 0) return checkEntryData(e, raw);
  if (!inflate)
    throw new Error(`zip: entry ${JSON.stringify(e.name)} is deflate-compressed and no inflate function was supplied`);
  let out: Uint8Array;
  try {
    out = inflate(raw, e.size);
  } catch (err) {
    throw new Error(
      `zip: entry ${JSON.stringify(e.name)} does not inflate (${(err as Error).message}); corrupt archive`,
    );
  }
  if (out && typeof (out as unknown as Promise<unknown>).then === 'function') {
    throw new Error(
      'zip: the inflate function returned a Promise; use the async reader (readPthAsync) with an async inflate',
    );
  }
  return checkEntryData(e, out);
}

/** Extract an entry, awaiting an async inflate function. */
export async function extractEntryAsync(bytes: Uint8Array, e: ZipEntry, inflate?: InflateRaw): Promise<Uint8Array> {
  const raw = entryRawData(bytes, e);
  if (e.method === 0) return checkEntryData(e, raw);
  if (!inflate)
    throw new Error(`zip: entry ${JSON.stringify(e.name)} is deflate-compressed and no inflate function was supplied`);
  let out: Uint8Array;
  try {
    out = await inflate(raw, e.size);
  } catch (err) {
    throw new Error(
      `zip: entry ${JSON.stringify(e.name)} does not inflate (${(err as Error).message}); corrupt archive`,
    );
  }
  return checkEntryData(e, out);
}

/**
 * Write a zip archive. Entries given `deflated` bytes (raw deflate, produced by the caller) are stored with method 8,
 * the rest stored. No zip64: for test fixtures and small archives only.
 */
export function writeZip(files: Array<{ name: string; data: Uint8Array; deflated?: Uint8Array }>): Uint8Array {
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const body = f.deflated ?? f.data;
    const crc = crc32(f.data);
    const lh = new Uint8Array(30 + name.length);
    const l = new DataView(lh.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, 20, true);
    l.setUint16(8, f.deflated ? 8 : 0, true);
    l.setUint32(14, crc, true);
    l.setUint32(18, body.length, true);
    l.setUint32(22, f.data.length, true);
    l.setUint16(26, name.length, true);
    lh.set(name, 30);
    const ch = new Uint8Array(46 + name.length);
    const c = new DataView(ch.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true);
    c.setUint16(6, 20, true);
    c.setUint16(10, f.deflated ? 8 : 0, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, body.length, true);
    c.setUint32(24, f.data.length, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, off, true);
    ch.set(name, 46);
    chunks.push(lh, body);
    central.push(ch);
    off += lh.length + body.length;
  }
  const cdSize = central.reduce((s, x) => s + x.length, 0);
  const end = new Uint8Array(22);
  const e = new DataView(end.buffer);
  e.setUint32(0, 0x06054b50, true);
  e.setUint16(8, files.length, true);
  e.setUint16(10, files.length, true);
  e.setUint32(12, cdSize, true);
  e.setUint32(16, off, true);
  const out = new Uint8Array(off + cdSize + 22);
  let p = 0;
  for (const x of [...chunks, ...central, end]) {
    out.set(x, p);
    p += x.length;
  }
  return out;
}

/**
 * Raw inflate with the web platform's DecompressionStream('deflate-raw') (browsers, Deno, Node >= 20.12), for
 * readPthAsync. Stops with an error as soon as the output exceeds `expectedSize` (no zip bombs).
 */
export async function webInflateRaw(data: Uint8Array, expectedSize: number): Promise<Uint8Array> {
  if (typeof DecompressionStream === 'undefined')
    throw new Error('DecompressionStream is not available here; pass an inflate function');
  const input = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(data.slice());
      c.close();
    },
  });
  const reader = input
    .pipeThrough(new DecompressionStream('deflate-raw') as unknown as TransformStream<Uint8Array, Uint8Array>)
    .getReader();
  const out = new Uint8Array(expectedSize);
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.length > expectedSize) {
      await reader.cancel();
      throw new Error(`inflates to more than the ${expectedSize} bytes the archive promises`);
    }
    out.set(value, n);
    n += value.length;
  }
  return n === expectedSize ? out : out.subarray(0, n);
}
