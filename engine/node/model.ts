// Node edge: open a model from a file, whether it is our model file or a reference checkpoint (converted in memory).
import { readFileSync } from 'node:fs';
import { convertCheckpoint, loadModel, sniffFormat, type SR3Model } from '../../weights-format/index.ts';
import { nodeInflateRaw, readFileBytes } from '../../weights-format/node.ts';

export interface OpenModelOptions {
  /** the reference's JSON options file, for a .pth */
  config?: string;
  normGroups?: number;
  /** where notes go (default stderr) */
  log?: (msg: string) => void;
}

export async function openModel(file: string, opts: OpenModelOptions = {}): Promise<SR3Model> {
  const bytes = await readFileBytes(file);
  const kind = sniffFormat(bytes);
  try {
    if (kind === 'pth') {
      const optionsText = opts.config ? readFileSync(opts.config, 'utf8') : undefined;
      const r = convertCheckpoint(bytes, { optionsText, normGroups: opts.normGroups, inflate: nodeInflateRaw });
      (opts.log ?? ((m) => console.error(m)))(
        `note: ${file} is a reference checkpoint; converted in memory (save time next run: sr3 convert ${file} -o model.safetensors)`,
      );
      for (const w of r.warnings) (opts.log ?? ((m) => console.error(m)))(`warning: ${w}`);
      return r.model;
    }
    return loadModel(bytes);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}
