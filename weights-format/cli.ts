// `sr3 convert` and `sr3 info`: the weights-format commands (dispatched by engine/node/cli.ts).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeModel, sniffFormat, openModelBytes, type SR3Model } from './model.ts';
import type { ConditionSpec } from './options.ts';
import { convertPth, nodeInflateRaw, readFileBytes } from './node.ts';

const CONVERT_USAGE = `usage: sr3 convert <in.pth> -o <out.safetensors> [--config opts.json] [--norm-groups N] [--dtype f32|f16|bf16]
                   [--scale N] [--resample KERNEL]

Converts a checkpoint of the reference PyTorch SR3 implementation (a *_gen.pth written by torch.save, or its
state_dict as safetensors) into an sr3-wgsl model file. Nothing in the .pth is executed.

  -o, --output       the model file to write (written atomically: nothing is left behind on error)
  --config           the reference's JSON options file (// comments allowed); otherwise the U-Net is inferred from
                     the tensor shapes
  --norm-groups      GroupNorm group count when the options file does not give it (default 32, as the reference)
  --dtype            storage type: f32 (default, exact), f16 or bf16
  --scale            upscaling factor of the condition image, stored for the sampler
  --resample         how the condition image is resampled (e.g. bicubic), stored for the sampler`;

const INFO_USAGE = `usage: sr3 info <file> [--json] [--config opts.json] [--norm-groups N]

Summarises an sr3-wgsl model file (config, parameter count, dtype, size, schedule). Given a reference .pth (or its
state_dict as safetensors), shows what \`sr3 convert\` would make of it, without writing anything; --config and
--norm-groups apply to that case.`;

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new Error(`${(e as Error).message}\n\n${usage}`);
  }
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function positiveNumber(flag: string, s: string | undefined, integer: boolean): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new Error(`${flag} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(s)}`);
  }
  return v;
}

export async function convertCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      output: { type: 'string', short: 'o' },
      config: { type: 'string' },
      'norm-groups': { type: 'string' },
      dtype: { type: 'string' },
      scale: { type: 'string' },
      resample: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
    CONVERT_USAGE,
  );
  if (values.help) {
    console.log(CONVERT_USAGE);
    return 0;
  }
  if (positionals.length !== 1)
    throw new Error(`give exactly one input checkpoint (got ${positionals.length})\n\n${CONVERT_USAGE}`);
  const out = values.output as string | undefined;
  if (!out) throw new Error(`give the output file with -o <out.safetensors>\n\n${CONVERT_USAGE}`);
  const dtypeFlag = ((values.dtype as string | undefined) ?? 'f32').toLowerCase();
  const dtypes: Record<string, 'F32' | 'F16' | 'BF16'> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
  if (!Object.hasOwn(dtypes, dtypeFlag))
    throw new Error(`--dtype must be f32, f16 or bf16, got ${JSON.stringify(values.dtype)}`);
  const condition: ConditionSpec = {};
  const scale = positiveNumber('--scale', values.scale as string | undefined, false);
  if (scale !== undefined) condition.scale = scale;
  if (values.resample !== undefined) condition.resample = values.resample as string;
  const res = await convertPth(positionals[0], out, {
    configPath: values.config as string | undefined,
    normGroups: positiveNumber('--norm-groups', values['norm-groups'] as string | undefined, true),
    dtype: dtypes[dtypeFlag],
    condition,
  });
  for (const w of res.warnings) console.error(`warning: ${w}`);
  if (!values.quiet) {
    const d = describeModel(res.model, res.bytes.length);
    console.log(
      `wrote ${out}: ${d.tensors} tensors, ${d.parameters.toLocaleString('en-US')} parameters, ${d.dtype}, ${fmtBytes(res.bytes.length)}`,
    );
    console.log(summaryLines(res.model).join('\n'));
  }
  return 0;
}

function scheduleLine(m: SR3Model): string {
  const s = m.schedule;
  if (!s) return 'unknown (no betas buffer and no options file)';
  if (s.schedule === 'custom') {
    const b = s.betas ?? [];
    return `custom, ${s.n_timestep} steps, betas ${b[0]} .. ${b[b.length - 1]}`;
  }
  const ends = s.linear_start !== undefined ? `, ${s.linear_start} .. ${s.linear_end}` : '';
  return `${s.schedule}, ${s.n_timestep} steps${ends}`;
}

function summaryLines(m: SR3Model): string[] {
  const c = m.config;
  const attn = c.attn_levels.length
    ? c.attn_levels
        .map(
          (l) =>
            `level ${l} (${c.inner_channel * c.channel_mults[l]} ch${c.image_size ? `, ${Math.floor(c.image_size / 2 ** l)}px at image_size ${c.image_size}` : ''})`,
        )
        .join(', ')
    : 'none';
  const cond = m.condition;
  const condParts = cond
    ? [
        cond.scale !== undefined ? `${cond.scale}x` : undefined,
        cond.resample,
        cond.bicubic_a !== undefined ? `a=${cond.bicubic_a}` : undefined,
        cond.clamp ? 'clamped' : undefined,
      ].filter(Boolean)
    : [];
  return [
    `  U-Net        in ${c.in_channel} -> out ${c.out_channel}, inner_channel ${c.inner_channel}, channel_mults [${c.channel_mults.join(', ')}], res_blocks ${c.res_blocks}`,
    `  GroupNorm    ${c.norm_groups} groups; dropout ${c.dropout}`,
    `  attention    ${attn} + first mid block`,
    `  schedule     ${scheduleLine(m)}`,
    `  condition    ${condParts.length ? condParts.join(', ') : 'not recorded (give --scale/--resample when converting)'}`,
  ];
}

export async function infoCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      json: { type: 'boolean' },
      config: { type: 'string' },
      'norm-groups': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    INFO_USAGE,
  );
  if (values.help) {
    console.log(INFO_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new Error(`give exactly one file (got ${positionals.length})\n\n${INFO_USAGE}`);
  const file = positionals[0];
  const bytes = await readFileBytes(file);
  const convertOpts = {
    optionsText: values.config ? new TextDecoder().decode(await readFileBytes(values.config as string)) : undefined,
    normGroups: positiveNumber('--norm-groups', values['norm-groups'] as string | undefined, true),
  };
  let model: SR3Model;
  let note = '';
  try {
    // the one model-opening path every command takes (upscale's --model included)
    const r = openModelBytes(bytes, { ...convertOpts, inflate: nodeInflateRaw });
    model = r.model;
    if (r.converted) {
      note =
        sniffFormat(bytes) === 'safetensors'
          ? 'reference state_dict (safetensors), not converted: this is what `sr3 convert` makes of it'
          : 'reference PyTorch checkpoint, not converted: this is what `sr3 convert` makes of it';
    }
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const d = describeModel(model, bytes.length);
  if (values.json) {
    console.log(JSON.stringify(note ? { ...d, note } : d));
    return 0;
  }
  console.log(`${file}: ${note ? note : d.format}`);
  console.log(
    `  size         ${fmtBytes(bytes.length)}; ${d.tensors} tensors, ${d.parameters.toLocaleString('en-US')} parameters, ${d.dtype}`,
  );
  console.log(summaryLines(model).join('\n'));
  return 0;
}
