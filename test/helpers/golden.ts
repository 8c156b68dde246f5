// Loading the golden cases (outputs of the reference PyTorch implementation, test/fixtures/golden/).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertCheckpoint, readSafetensors, toFloat32, type SR3Model } from '../../weights-format/index.ts';
import { nodeInflateRaw } from '../../weights-format/node.ts';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const GOLDEN_CASES = ['tiny', 'groups32'] as const;

export function goldenModel(name: string): SR3Model {
  const dir = join(FIXTURES, 'golden', name);
  const optionsText = readFileSync(join(dir, 'config.json'), 'utf8');
  return convertCheckpoint(new Uint8Array(readFileSync(join(dir, 'model_gen.pth'))), {
    optionsText,
    inflate: nodeInflateRaw,
  }).model;
}

export function goldenTensors(
  name: string,
  file: string,
): { get(k: string): Float32Array; shape(k: string): number[]; keys: string[]; metadata: Record<string, string> } {
  const st = readSafetensors(new Uint8Array(readFileSync(join(FIXTURES, 'golden', name, file))));
  return {
    get: (k) => {
      const e = st.tensors.get(k);
      if (!e) throw new Error(`${name}/${file} has no tensor ${k}`);
      return toFloat32(e);
    },
    shape: (k) => st.tensors.get(k)!.shape,
    keys: [...st.tensors.keys()],
    metadata: st.metadata,
  };
}
