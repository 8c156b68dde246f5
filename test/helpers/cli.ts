// Run the `sr3` CLI in-process, capturing what it prints.
import { main } from '../../engine/node/cli.ts';

export async function runCli(argv: string[]): Promise<{ code: number; out: string }> {
  const err = console.error;
  const log = console.log;
  const lines: string[] = [];
  console.error = (...a: unknown[]) => lines.push(a.join(' '));
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  try {
    return { code: await main(argv), out: lines.join('\n') };
  } finally {
    console.error = err;
    console.log = log;
  }
}
