// Node edge: an input safetensors file of the checking commands (forward, sample, grad), with errors that name the
// file, the tensor and what the command expects.
import { readSafetensors, type TensorEntry } from '../../weights-format/index.ts';
import { readFileBytes } from '../../weights-format/node.ts';

export interface TensorFile {
  /** The tensor `name`; throws naming the file and what it should hold when absent or of another rank. */
  get(name: string, rank?: number): TensorEntry;
  has(name: string): boolean;
}

export async function openTensorFile(file: string, holds: string): Promise<TensorFile> {
  const { tensors } = readSafetensors(await readFileBytes(file));
  return {
    has: (name) => tensors.has(name),
    get(name, rank) {
      const e = tensors.get(name);
      if (!e)
        throw new Error(
          `${file}: no tensor '${name}' (it should hold ${holds}; found: ${[...tensors.keys()].slice(0, 8).join(', ') || 'none'})`,
        );
      if (rank !== undefined && e.shape.length !== rank)
        throw new Error(`${file}: '${name}' has shape [${e.shape}], expected ${rank} dimensions`);
      return e;
    },
  };
}
