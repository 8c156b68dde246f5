#!/usr/bin/env node
// The browser build: the engine core (engine/browser.ts -> sr3.js, an ESM library) and the demo page (web/) bundled
// with esbuild into a git-ignored folder (default dist/web/), with the bundled model and the example image copied
// next to them. Refuses to bundle anything from Node (node: built-ins, engine/node/, weights-format/node.ts, cli.ts).
//
//   node scripts/build-web.mjs                 build into dist/web/
//   node scripts/build-web.mjs --serve         build, then serve it on http://127.0.0.1:8080/ (--port N, 0 = any)
//   node scripts/build-web.mjs --serve-only    serve an existing build
//   options: --outdir DIR, --no-model (do not copy models/natural4x.safetensors), --minify
import { builtinModules } from 'node:module';
import { copyFileSync, createReadStream, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'models/natural4x.safetensors';
const EXAMPLE = 'examples/astronaut-32.png';

/** Paths (relative to the repository, '/'-separated) that must never reach the bundle. */
const FORBIDDEN = [/^engine\/node\//, /^weights-format\/(node|cli|testing)\.ts$/, /^bin\//, /^test\//, /^bench\//];
const BUILTINS = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

/** esbuild plugin: an import of a Node built-in or of Node-only project code is a build error. */
export const noNodePlugin = {
  name: 'no-node',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.path.startsWith('node:') || BUILTINS.has(args.path) || BUILTINS.has(args.path.split('/')[0])) {
        return {
          errors: [
            {
              text: `Node built-in '${args.path}' imported by ${relative(ROOT, args.importer)}: the browser build must not use Node APIs`,
            },
          ],
        };
      }
      return undefined;
    });
    build.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
      const rel = relative(ROOT, args.path).split(sep).join('/');
      if (FORBIDDEN.some((r) => r.test(rel))) {
        return { errors: [{ text: `${rel} is Node-only code and must not be bundled for the browser` }] };
      }
      return undefined;
    });
  },
};

/** Build into `outdir`; returns the output files and the bundled inputs. */
export async function buildWeb({
  outdir = join(ROOT, 'dist/web'),
  copyModel = true,
  minify = false,
  log = console.log,
} = {}) {
  const { build } = await import('esbuild');
  outdir = resolve(outdir);
  rmSync(join(outdir, 'assets'), { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const t0 = Date.now();
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { sr3: 'engine/browser.ts', main: 'web/main.ts' },
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome113'],
    chunkNames: 'assets/[name]-[hash]',
    sourcemap: 'linked',
    minify,
    metafile: true,
    logLevel: 'silent',
    plugins: [noNodePlugin],
  });
  // Belt and braces: look at what went in.
  const inputs = Object.keys(result.metafile.inputs);
  const bad = inputs.filter((p) => p.startsWith('node:') || FORBIDDEN.some((r) => r.test(p)));
  if (bad.length) throw new Error(`the browser bundle contains Node-only code: ${bad.join(', ')}`);
  for (const f of ['index.html', 'style.css']) copyFileSync(join(ROOT, 'web', f), join(outdir, f));
  mkdirSync(join(outdir, 'examples'), { recursive: true });
  copyFileSync(join(ROOT, EXAMPLE), join(outdir, EXAMPLE));
  if (copyModel) {
    if (!existsSync(join(ROOT, MODEL))) throw new Error(`${MODEL} is missing (the demo loads it by default)`);
    mkdirSync(join(outdir, 'models'), { recursive: true });
    copyFileSync(join(ROOT, MODEL), join(outdir, MODEL));
  }
  const outputs = Object.entries(result.metafile.outputs).filter(([p]) => !p.endsWith('.map'));
  const kb = outputs.reduce((s, [, o]) => s + o.bytes, 0) / 1024;
  log(
    `build-web: ${relative(process.cwd(), outdir) || '.'}/ (${outputs.length} scripts, ${kb.toFixed(0)} KiB, ${inputs.length} modules, ${Date.now() - t0} ms)${copyModel ? ` + ${MODEL}` : ''}`,
  );
  return { outdir, inputs, outputs: outputs.map(([p]) => p) };
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.safetensors': 'application/octet-stream',
  '.pth': 'application/octet-stream',
};

/** A static file server for `root` on 127.0.0.1 (GET/HEAD only, no listing, nothing outside `root`). */
export function serveStatic(root, port = 8080, host = '127.0.0.1') {
  root = resolve(root);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let path;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad request');
      return;
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = resolve(root, `.${path}`);
    if (file !== root && !file.startsWith(root + sep)) {
      res.writeHead(403).end('forbidden');
      return;
    }
    let st;
    try {
      st = statSync(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
      return;
    }
    if (!st.isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, {
      'content-type': MIME[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-cache',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolvePromise({
        server,
        url: `http://${host}:${addr.port}/`,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      outdir: { type: 'string', default: join(ROOT, 'dist/web') },
      serve: { type: 'boolean' },
      'serve-only': { type: 'boolean' },
      port: { type: 'string', default: '8080' },
      'no-model': { type: 'boolean' },
      minify: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'usage: node scripts/build-web.mjs [--outdir DIR] [--no-model] [--minify] [--serve | --serve-only] [--port N]',
    );
    return;
  }
  if (!values['serve-only'])
    await buildWeb({ outdir: values.outdir, copyModel: !values['no-model'], minify: values.minify });
  if (values.serve || values['serve-only']) {
    if (!existsSync(join(values.outdir, 'index.html')))
      throw new Error(`${values.outdir} has no build: run npm run build:web first`);
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new Error(`--port must be 0..65535, got ${values.port}`);
    const { url } = await serveStatic(values.outdir, port);
    // The first line a caller (test/browser.test.ts) reads: keep its form.
    console.log(`serving ${relative(process.cwd(), values.outdir) || '.'}/ on ${url}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`build-web: ${e.message ?? e}`);
    process.exit(1);
  });
}
