// Node edge: open a model from a file, whether it is our model file or a reference checkpoint (converted in memory).
import { openModelBytes, type SR3Model } from '../../weights-format/index.ts';
import { nodeInflateRaw, readFileBytes } from '../../weights-format/node.ts';

export interface OpenModelOptions {
  /** the reference's JSON options file, for a .pth */
  config?: string;
  normGroups?: number;
  /** where notes go (default stderr) */
  log?: (msg: string) => void;
}

/** Open a model file or a reference checkpoint (the same path and messages as `sr3 info` and `sr3 convert`). */
export async function openModel(file: string, opts: OpenModelOptions = {}): Promise<SR3Model> {
  const bytes = await readFileBytes(file);
  const optionsText = opts.config ? new TextDecoder().decode(await readFileBytes(opts.config)) : undefined;
  let r: ReturnType<typeof openModelBytes>;
  try {
    r = openModelBytes(bytes, { optionsText, normGroups: opts.normGroups, inflate: nodeInflateRaw });
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const log = opts.log ?? ((m: string) => console.error(m));
  if (r.converted)
    log(
      `note: ${file} is a reference checkpoint; converted in memory (save time next run: sr3 convert ${file} -o model.safetensors)`,
    );
  for (const w of r.warnings) log(`warning: ${w}`);
  return r.model;
}
