// The `sr3` command line. Each command lives in its own module, loaded only when it runs.

type Command = { summary: string; run: () => Promise<(argv: string[]) => Promise<number>> };

const commands: Record<string, Command> = {
  upscale: {
    summary: 'super-resolve images (PNG/JPEG in, PNG out) with the bundled 4x model or another',
    run: async () => (await import('./upscale.ts')).upscaleCommand,
  },
  eval: {
    summary: 'PSNR / SSIM / consistency of a model against bicubic on a folder of HR photos',
    run: async () => (await import('./eval.ts')).evalCommand,
  },
  worker: {
    summary:
      'take upscaling jobs from a Redis queue (BullMQ), one process per GPU (needs the optional bullmq, ioredis)',
    run: async () => (await import('./worker.ts')).workerCommand,
  },
  submit: {
    summary: 'put upscaling jobs for files or folders on a Redis queue; --wait follows them with one progress bar',
    run: async () => (await import('./submit.ts')).submitCommand,
  },
  queue: {
    summary: "a Redis queue's jobs waiting, active, done and failed, and its recent failures",
    run: async () => (await import('./submit.ts')).queueCommand,
  },
  doctor: {
    summary: 'show the WebGPU adapter, its features and limits',
    run: async () => (await import('./doctor.ts')).doctorCommand,
  },
  convert: {
    summary: 'convert a reference PyTorch SR3 checkpoint (.pth) into an sr3-wgsl model file',
    run: async () => (await import('../../weights-format/cli.ts')).convertCommand,
  },
  forward: {
    summary: 'evaluate the U-Net once: eps = UNet(x_in, noise_level), safetensors in and out',
    run: async () => (await import('./forward.ts')).forwardCommand,
  },
  sample: {
    summary: 'run a sampler from given noise, writing every step (for checking against PyTorch)',
    run: async () => (await import('./sample.ts')).sampleCommand,
  },
  train: {
    summary: 'train a model on a folder of photos (Algorithm 1), with checkpoints and a loss plot',
    run: async () => (await import('./train.ts')).trainCommand,
  },
  grad: {
    summary: 'loss, gradients and Adam steps on one batch (for checking training against PyTorch)',
    run: async () => (await import('./grad.ts')).gradCommand,
  },
  info: {
    summary: 'summarise a model file (config, parameters, dtype, size, schedule)',
    run: async () => (await import('../../weights-format/cli.ts')).infoCommand,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  const env = [
    'environment (any command; README "Environment"):',
    '  SR3_CONV_KERNEL  tiled | direct (f32) | mma3 (f32 on tensor cores) | mma | f16 (f16 operands); sr3 doctor shows which run here',
    '  SR3_DAWN_FLAGS   the Dawn toggles asked for (none for no toggles)',
    "  SR3_DEBUG=1      stack traces with errors (and Dawn's start-up notes on stderr)",
    "  SR3_DAWN_LOG=1   show Dawn's start-up notes about adapter limits (hidden by default)",
  ];
  return `usage: sr3 <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n${env.join('\n')}\n\nRun \`sr3 <command> --help\` for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`error: unknown command '${name}'\n\n${usage()}`);
    return 1;
  }
  try {
    const run = await cmd.run();
    return await run(rest);
  } catch (e) {
    const err = e as Error;
    console.error(`error: ${err.message}`);
    if (process.env.SR3_DEBUG) console.error(err.stack);
    return 1;
  }
}
