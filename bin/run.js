// Runs the `sr3` command in this process: from the TypeScript sources through tsx in a clone of the repository
// (tsx is a devDependency there), or from the compiled JavaScript in dist/ in an installed package (which ships no
// sources). bin/sr3.js starts this file with Dawn's start-up notes filtered out of stderr.
import { existsSync } from 'node:fs';

// Started by bin/sr3.js with an IPC channel: if that process is killed outright (SIGKILL), the channel closes and
// this one stops too, instead of working on unseen. The channel alone keeps nothing alive.
if (process.channel) {
  process.channel.unref();
  process.on('disconnect', () => process.exit(137));
}

const source = new URL('../engine/node/cli.ts', import.meta.url);
const compiled = new URL('../dist/engine/node/cli.js', import.meta.url);

let main;
if (existsSync(source)) {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    if (!existsSync(compiled)) {
      console.error(
        'error: tsx is not installed; run `npm ci` in the sr3-wgsl folder first (or `npm run build` for dist/)',
      );
      process.exit(1);
    }
  }
  if (register) {
    register();
    ({ main } = await import(source.href));
  }
}
main ??= (await import(compiled.href)).main;
process.exitCode = await main(process.argv.slice(2));
