#!/usr/bin/env node
// `sr3` command: runs the TypeScript CLI through tsx (installed by `npm ci`).
let register;
try {
  ({ register } = await import('tsx/esm/api'));
} catch {
  console.error('error: tsx is not installed; run `npm ci` in the sr3-wgsl folder first');
  process.exit(1);
}
register();
const { main } = await import('../engine/node/cli.ts');
process.exitCode = await main(process.argv.slice(2));
