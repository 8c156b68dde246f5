// Node edge of the weights format: files, zlib, hashing. The core (index.ts) stays free of Node imports.

import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import type { ConditionSpec } from './options.ts';
import { type ConvertResult, type SR3Model, convertCheckpoint, loadModel } from './model.ts';

/** zlib raw inflate that never produces more than the size the archive promises (no zip bombs). */
export function nodeInflateRaw(data: Uint8Array, expectedSize: number): Uint8Array {
  return inflateRawSync(data, { maxOutputLength: Math.max(1, expectedSize) });
}

/** Read and validate an sr3-wgsl model file. */
export async function readModelFile(file: string): Promise<SR3Model> {
  const bytes = await readFileBytes(file);
  try {
    return loadModel(bytes);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

export async function readFileBytes(file: string): Promise<Uint8Array> {
  try {
    const b = await fsp.readFile(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new Error(`${file}: no such file`);
    if (err.code === 'EISDIR') throw new Error(`${file}: is a directory, expected a file`);
    throw new Error(`${file}: cannot read (${err.message})`);
  }
}

/**
 * Write `bytes` to `file` atomically: a temporary file in the same folder, flushed, then renamed over the target.
 * On any error the temporary file is removed and the target is left as it was.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    await fh.writeFile(bytes);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, file);
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw new Error(`cannot write ${file}: ${(e as Error).message}`);
  }
}

export interface ConvertPthOptions {
  /** Path of the reference's JSON options file. */
  configPath?: string;
  normGroups?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  condition?: ConditionSpec;
}

/**
 * Convert a reference checkpoint file (zip .pth, or a state_dict as safetensors) into an sr3-wgsl model file at
 * `outPath`, atomically: nothing is written unless the whole conversion succeeded.
 */
export async function convertPth(
  inPath: string,
  outPath: string,
  opts: ConvertPthOptions = {},
): Promise<ConvertResult> {
  if (path.resolve(inPath) === path.resolve(outPath))
    throw new Error('the output path is the input file; choose another -o');
  const bytes = await readFileBytes(inPath);
  const optionsText = opts.configPath ? new TextDecoder().decode(await readFileBytes(opts.configPath)) : undefined;
  let res: ConvertResult;
  try {
    res = convertCheckpoint(bytes, {
      optionsText,
      normGroups: opts.normGroups,
      dtype: opts.dtype,
      condition: opts.condition,
      inflate: nodeInflateRaw,
      source: {
        file: path.basename(inPath),
        bytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      },
    });
  } catch (e) {
    throw new Error(`${inPath}: ${(e as Error).message}`);
  }
  await writeFileAtomic(outPath, res.bytes);
  return res;
}
