#!/usr/bin/env python3
"""The SR3 U-Net in PyTorch, timed on the same card as sr3-wgsl: for comparison only (issue 6's ratio).

The engine does not use PyTorch. This script rebuilds the U-Net of the widely used PyTorch SR3 implementation
("Image-Super-Resolution-via-Iterative-Refinement", model/sr3_modules/unet.py) with the same module structure and
state_dict names, and measures one forward (one denoising step) of issue 6's two reference configs, so that the
ratio between sr3-wgsl and PyTorch can be measured on the GPU machine. It needs only Python 3 and PyTorch (CUDA for
the timings): no other package, no network. torch is imported inside main(), so --help works without it.

Commands (from the repository root):
  python3 bench/torch_unet.py                       # time 16->128 (b1, b8) and 64->512 (b1): JSON lines on stdout
  python3 bench/torch_unet.py --reps 30 --out torch.jsonl
  python3 bench/torch_unet.py --batch8-512          # also 64->512 at batch 8 (may run out of memory: reported)
  python3 bench/torch_unet.py --impls graph-fp16,eager-fp32 --filter '16->128'
  python3 bench/torch_unet.py --keys test/fixtures/golden/tiny    # module names and shapes vs the checkpoint's
  python3 bench/torch_unet.py --check test/fixtures/golden/tiny   # float64 forward vs the golden eps (and --keys)

Timing rows: {"name": "torch unet 16->128 128x128 b1", "impl": "eager-fp32" | "eager-fp16" | "graph-fp32" |
"graph-fp16" | "eager-fp32-tf32", "device", "ms_per_step", "ms_per_image", "peak_bytes", "torch", ...}; they go next
to the `npm run bench -- --json` rows of the same name without "torch " (bench/compare.ts reads both). A row that fails
(out of memory, graph capture) is printed as {"name", "impl", "error"} and the others still run; the exit status is
then 1. Progress goes to stderr.
"""

import argparse
import copy
import gc
import json
import math
import os
import re
import statistics
import struct
import sys

PREFIX = 'denoise_fn.'

IMPLS = ['eager-fp32', 'eager-fp16', 'graph-fp32', 'graph-fp16', 'eager-fp32-tf32']

# Issue 6's reference configs (the same as bench/run.ts's REF_16_128 and REF_64_512).
BENCH_MODELS = {
    '16->128': dict(in_channel=6, out_channel=3, inner_channel=64, norm_groups=32, channel_mults=[1, 2, 4, 8, 8],
                    attn_res=[16], res_blocks=2, dropout=0, image_size=128),
    '64->512': dict(in_channel=6, out_channel=3, inner_channel=64, norm_groups=16, channel_mults=[1, 2, 4, 8, 16],
                    attn_res=[], res_blocks=1, dropout=0, image_size=512),
}
# (model, image size, batch); the last one only with --batch8-512.
CASES = [('16->128', 128, 1), ('16->128', 128, 8), ('64->512', 512, 1)]
CASE_512_B8 = ('64->512', 512, 8)


# ---------------------------------------------------------------------------------------------------------------------
# safetensors, in plain Python: 8-byte little-endian header length, a JSON header, then the data section.

ST_SIZES = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1, 'U8': 1, 'BOOL': 1}
ST_TORCH = {'F64': 'float64', 'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16', 'I64': 'int64',
            'I32': 'int32', 'I16': 'int16', 'I8': 'int8', 'U8': 'uint8', 'BOOL': 'bool'}


def read_safetensors_header(path):
    """Return (header without __metadata__, byte offset of the data section); checks every tensor's extent."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f'{path}: too short for a safetensors file')
        (n,) = struct.unpack('<Q', raw)
        if n > size - 8:
            raise ValueError(f'{path}: header length {n} runs past the end of the file ({size} bytes)')
        header = json.loads(f.read(n).decode('utf-8'))
    header.pop('__metadata__', None)
    data_start = 8 + n
    for name, info in header.items():
        dtype = info['dtype']
        if dtype not in ST_SIZES:
            raise ValueError(f'{path}: tensor {name} has dtype {dtype}, which this reader does not know')
        begin, end = info['data_offsets']
        count = 1
        for d in info['shape']:
            count *= d
        if end - begin != count * ST_SIZES[dtype] or begin < 0 or data_start + end > size:
            raise ValueError(f'{path}: tensor {name} {dtype} {info["shape"]} has bad data_offsets {[begin, end]}')
    return header, data_start


def safetensors_shapes(path, prefix=None):
    """{name: shape tuple} from the header; with a prefix, only the names that carry it, with it stripped."""
    header, _ = read_safetensors_header(path)
    out = {}
    for name, info in header.items():
        if prefix is not None:
            if not name.startswith(prefix):
                continue
            name = name[len(prefix):]
        out[name] = tuple(info['shape'])
    return out


def load_safetensors(torch, path):
    """{name: CPU tensor} (little-endian data, as on every machine this runs on)."""
    header, data_start = read_safetensors_header(path)
    with open(path, 'rb') as f:
        f.seek(data_start)
        data = f.read()
    out = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        dtype = getattr(torch, ST_TORCH[info['dtype']])
        shape = list(info['shape'])
        if end == begin:
            out[name] = torch.zeros(shape, dtype=dtype)
        else:
            # bytearray: frombuffer wants a writable buffer; the copy also owns its memory.
            out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
    return out


def compare_shapes(model_shapes, ckpt_shapes):
    """Problems (missing, unexpected, wrong shape) between two {name: shape} maps; empty when they match exactly."""
    problems = []
    for name, shape in ckpt_shapes.items():
        if name not in model_shapes:
            problems.append(f'checkpoint has {name} {list(shape)}, the model does not')
        elif tuple(model_shapes[name]) != tuple(shape):
            problems.append(f'{name}: model {list(model_shapes[name])}, checkpoint {list(shape)}')
    for name, shape in model_shapes.items():
        if name not in ckpt_shapes:
            problems.append(f'model has {name} {list(shape)}, the checkpoint does not')
    return problems


def config_from_json(path):
    """The U-Net's constructor arguments from a reference options file (model.unet.*, model.diffusion.image_size)."""
    with open(path) as f:
        opt = json.load(f)
    u = opt['model']['unet']
    attn_res = u.get('attn_res', [])
    if isinstance(attn_res, int):
        attn_res = [attn_res]
    return dict(
        in_channel=u['in_channel'],
        out_channel=u['out_channel'],
        inner_channel=u['inner_channel'],
        norm_groups=u.get('norm_groups', 32),
        channel_mults=list(u['channel_multiplier']),
        attn_res=list(attn_res),
        res_blocks=u['res_blocks'],
        dropout=u.get('dropout', 0),
        image_size=opt['model']['diffusion']['image_size'],
    )


# ---------------------------------------------------------------------------------------------------------------------
# The model: module structure, names and arithmetic of the reference's model/sr3_modules/unet.py (the version with
# norm_groups), written against the torch module passed in, so that torch stays a lazy import.

def define_unet(torch):
    nn = torch.nn

    class PositionalEncoding(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.dim = dim

        def forward(self, noise_level):
            # noise_level [B, 1] -> [B, 1, dim]
            count = self.dim // 2
            step = torch.arange(count, dtype=noise_level.dtype, device=noise_level.device) / count
            encoding = noise_level.unsqueeze(1) * torch.exp(-math.log(1e4) * step.unsqueeze(0))
            return torch.cat([torch.sin(encoding), torch.cos(encoding)], dim=-1)

    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class FeatureWiseAffine(nn.Module):
        # use_affine_level False: one Linear, its output added per channel.
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.noise_func = nn.Sequential(nn.Linear(in_channels, out_channels))

        def forward(self, x, noise_embed):
            batch = x.shape[0]
            return x + self.noise_func(noise_embed).view(batch, -1, 1, 1)

    class Upsample(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode='nearest')
            self.conv = nn.Conv2d(dim, dim, 3, padding=1)

        def forward(self, x):
            return self.conv(self.up(x))

    class Downsample(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.conv = nn.Conv2d(dim, dim, 3, 2, 1)

        def forward(self, x):
            return self.conv(x)

    class Block(nn.Module):
        # block.0 GroupNorm, block.1 Swish, block.2 Dropout or Identity, block.3 the 3x3 conv
        def __init__(self, dim, dim_out, groups=32, dropout=0):
            super().__init__()
            self.block = nn.Sequential(
                nn.GroupNorm(groups, dim),
                Swish(),
                nn.Dropout(dropout) if dropout != 0 else nn.Identity(),
                nn.Conv2d(dim, dim_out, 3, padding=1),
            )

        def forward(self, x):
            return self.block(x)

    class ResnetBlock(nn.Module):
        def __init__(self, dim, dim_out, noise_level_emb_dim, dropout=0, norm_groups=32):
            super().__init__()
            self.noise_func = FeatureWiseAffine(noise_level_emb_dim, dim_out)
            self.block1 = Block(dim, dim_out, groups=norm_groups)
            self.block2 = Block(dim_out, dim_out, groups=norm_groups, dropout=dropout)
            self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

        def forward(self, x, time_emb):
            h = self.block1(x)
            h = self.noise_func(h, time_emb)
            h = self.block2(h)
            return h + self.res_conv(x)

    class SelfAttention(nn.Module):
        def __init__(self, in_channel, n_head=1, norm_groups=32):
            super().__init__()
            self.n_head = n_head
            self.norm = nn.GroupNorm(norm_groups, in_channel)
            self.qkv = nn.Conv2d(in_channel, in_channel * 3, 1, bias=False)
            self.out = nn.Conv2d(in_channel, in_channel, 1)

        def forward(self, input):
            batch, channel, height, width = input.shape
            n_head = self.n_head
            head_dim = channel // n_head
            norm = self.norm(input)
            qkv = self.qkv(norm).view(batch, n_head, head_dim * 3, height, width)
            query, key, value = qkv.chunk(3, dim=2)
            attn = torch.einsum('bnchw, bncyx -> bnhwyx', query, key).contiguous() / math.sqrt(channel)
            attn = attn.view(batch, n_head, height, width, -1)
            attn = torch.softmax(attn, -1)
            attn = attn.view(batch, n_head, height, width, height, width)
            out = torch.einsum('bnhwyx, bncyx -> bnchw', attn, value).contiguous()
            out = self.out(out.view(batch, channel, height, width))
            return out + input

    class ResnetBlocWithAttn(nn.Module):
        def __init__(self, dim, dim_out, *, noise_level_emb_dim, norm_groups=32, dropout=0, with_attn=False):
            super().__init__()
            self.with_attn = with_attn
            self.res_block = ResnetBlock(dim, dim_out, noise_level_emb_dim, dropout=dropout, norm_groups=norm_groups)
            if with_attn:
                self.attn = SelfAttention(dim_out, norm_groups=norm_groups)

        def forward(self, x, time_emb):
            x = self.res_block(x, time_emb)
            if self.with_attn:
                x = self.attn(x)
            return x

    class UNet(nn.Module):
        def __init__(self, in_channel=6, out_channel=3, inner_channel=32, norm_groups=32,
                     channel_mults=(1, 2, 4, 8, 8), attn_res=(8,), res_blocks=3, dropout=0, image_size=128):
            super().__init__()
            noise_level_channel = inner_channel
            self.noise_level_mlp = nn.Sequential(
                PositionalEncoding(inner_channel),
                nn.Linear(inner_channel, inner_channel * 4),
                Swish(),
                nn.Linear(inner_channel * 4, inner_channel),
            )

            num_mults = len(channel_mults)
            pre_channel = inner_channel
            feat_channels = [pre_channel]
            now_res = image_size
            downs = [nn.Conv2d(in_channel, inner_channel, kernel_size=3, padding=1)]
            for ind in range(num_mults):
                is_last = ind == num_mults - 1
                use_attn = now_res in attn_res
                channel_mult = inner_channel * channel_mults[ind]
                for _ in range(res_blocks):
                    downs.append(ResnetBlocWithAttn(
                        pre_channel, channel_mult, noise_level_emb_dim=noise_level_channel,
                        norm_groups=norm_groups, dropout=dropout, with_attn=use_attn))
                    feat_channels.append(channel_mult)
                    pre_channel = channel_mult
                if not is_last:
                    downs.append(Downsample(pre_channel))
                    feat_channels.append(pre_channel)
                    now_res = now_res // 2
            self.downs = nn.ModuleList(downs)

            self.mid = nn.ModuleList([
                ResnetBlocWithAttn(pre_channel, pre_channel, noise_level_emb_dim=noise_level_channel,
                                   norm_groups=norm_groups, dropout=dropout, with_attn=True),
                ResnetBlocWithAttn(pre_channel, pre_channel, noise_level_emb_dim=noise_level_channel,
                                   norm_groups=norm_groups, dropout=dropout, with_attn=False),
            ])

            ups = []
            for ind in reversed(range(num_mults)):
                is_last = ind < 1
                use_attn = now_res in attn_res
                channel_mult = inner_channel * channel_mults[ind]
                for _ in range(res_blocks + 1):
                    ups.append(ResnetBlocWithAttn(
                        pre_channel + feat_channels.pop(), channel_mult, noise_level_emb_dim=noise_level_channel,
                        norm_groups=norm_groups, dropout=dropout, with_attn=use_attn))
                    pre_channel = channel_mult
                if not is_last:
                    ups.append(Upsample(pre_channel))
                    now_res = now_res * 2
            self.ups = nn.ModuleList(ups)

            self.final_conv = Block(pre_channel, out_channel, groups=norm_groups)

        def forward(self, x, time):
            t = self.noise_level_mlp(time)
            feats = []
            for layer in self.downs:
                if isinstance(layer, ResnetBlocWithAttn):
                    x = layer(x, t)
                else:
                    x = layer(x)
                feats.append(x)
            for layer in self.mid:
                x = layer(x, t)
            for layer in self.ups:
                if isinstance(layer, ResnetBlocWithAttn):
                    x = layer(torch.cat((x, feats.pop()), dim=1), t)
                else:
                    x = layer(x)
            return self.final_conv(x)

    return UNet


def model_shapes(model):
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def note(msg):
    print(msg, file=sys.stderr, flush=True)


def first_line(e):
    s = str(e).strip()
    s = s.splitlines()[0] if s else ''
    return f'{type(e).__name__}: {s}'[:400]


# ---------------------------------------------------------------------------------------------------------------------
# --keys and --check: the model built here against a golden checkpoint (test/fixtures/golden/*).

def run_keys(torch, d):
    cfg = config_from_json(os.path.join(d, 'config.json'))
    model = define_unet(torch)(**cfg)
    ckpt = safetensors_shapes(os.path.join(d, 'weights.safetensors'), PREFIX)
    mine = model_shapes(model)
    problems = compare_shapes(mine, ckpt)
    for p in problems:
        note(f'keys mismatch: {p}')
    print(json.dumps({'keys': d, 'ok': not problems, 'model_tensors': len(mine), 'checkpoint_tensors': len(ckpt),
                      'problems': len(problems)}), flush=True)
    return 0 if not problems else 1


def run_check(torch, d, device, tol):
    if run_keys(torch, d) != 0:
        return 1
    cfg = config_from_json(os.path.join(d, 'config.json'))
    torch.manual_seed(0)
    model = define_unet(torch)(**cfg)
    weights = load_safetensors(torch, os.path.join(d, 'weights.safetensors'))
    state = {k[len(PREFIX):]: v for k, v in weights.items() if k.startswith(PREFIX)}  # the rest: schedule buffers
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=torch.float64)
    model.eval()

    fwd = load_safetensors(torch, os.path.join(d, 'forward.safetensors'))
    x = fwd['x_in'].to(device=device, dtype=torch.float64)
    noise_level = fwd['noise_level'].to(device=device, dtype=torch.float64)  # [B, 1]
    ref = fwd['eps'].to(device=device, dtype=torch.float64)

    # The layer outputs the fixture records (act.noise_emb, act.downs.i, act.mid.i, act.ups.i), to say where a
    # mismatch starts.
    acts = {}

    def hook(name):
        def f(module, inputs, output):
            acts[name] = output.detach()
        return f

    handles = [model.noise_level_mlp.register_forward_hook(hook('act.noise_emb'))]
    for group in ('downs', 'mid', 'ups'):
        for i, layer in enumerate(getattr(model, group)):
            handles.append(layer.register_forward_hook(hook(f'act.{group}.{i}')))
    with torch.no_grad():
        out = model(x, noise_level)
    for h in handles:
        h.remove()

    def rel(a, b):
        return (a - b).abs().max().item() / max(1.0, b.abs().max().item())

    layers = {}
    for name, got in acts.items():
        if name in fwd:
            want = fwd[name].to(device=device, dtype=torch.float64)
            layers[name] = rel(got, want) if tuple(got.shape) == tuple(want.shape) else f'shape {list(got.shape)}'
    if tuple(out.shape) != tuple(ref.shape):
        print(json.dumps({'check': d, 'ok': False, 'error': f'output shape {list(out.shape)}, eps {list(ref.shape)}'}))
        return 1
    diff = (out - ref).abs().max().item()
    ref_max = ref.abs().max().item()
    err = diff / max(1.0, ref_max)
    ok = err <= tol
    bad = [k for k, v in layers.items() if isinstance(v, str) or v > tol]
    print(json.dumps({'check': d, 'ok': ok, 'device': str(device), 'dtype': 'float64', 'max_abs_diff': diff,
                      'max_abs_ref': ref_max, 'rel_err': err, 'tol': tol, 'layers_checked': len(layers),
                      'first_bad_layer': bad[0] if bad else None, 'torch': torch.__version__}), flush=True)
    if bad:
        note('layers over the tolerance: ' + ', '.join(f'{k} {layers[k]}' for k in bad))
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------------------------
# Timing.

def capture_graph(torch, model, x, t, warmup):
    """A CUDA graph of one forward on static copies of x and t; returns a function that replays it."""
    static_x = x.clone()
    static_t = t.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Warm-up outside the capture, on a side stream as the CUDA-graph docs do: cudnn.benchmark picks its
        # algorithms here, and lazy initialisation happens before capturing.
        for _ in range(max(3, warmup)):
            model(static_x, static_t)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_x, static_t)
    torch.cuda.synchronize()

    def replay():
        graph.replay()
        return static_out

    return replay


def time_row(torch, cpu_model, cfg, batch, size, impl, reps, warmup):
    """(median ms, min ms, peak bytes) of one forward at batch x size x size with the implementation `impl`."""
    half = impl.endswith('-fp16')
    graph = impl.startswith('graph-')
    tf32 = impl == 'eager-fp32-tf32'
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dtype = torch.float16 if half else torch.float32
    device = torch.device('cuda')

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = copy.deepcopy(cpu_model).to(device=device, dtype=dtype)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, cfg['in_channel'], size, size, generator=gen).to(device=device, dtype=dtype)
    t = torch.rand(batch, 1, generator=gen).to(device=device, dtype=dtype)  # noise level (sqrt alpha-bar) in [0, 1)

    with torch.no_grad():
        if graph:
            step = capture_graph(torch, model, x, t, warmup)
        else:
            def step():
                return model(x, t)
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    peak = torch.cuda.max_memory_allocated()
    return statistics.median(times), min(times), peak


def run_bench(torch, args):
    if not torch.cuda.is_available():
        print(json.dumps({'name': 'torch unet', 'impl': None, 'error': 'CUDA is not available: timing needs a GPU'}))
        return 2
    torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name()
    UNet = define_unet(torch)
    impls = args.impls
    cases = CASES + ([CASE_512_B8] if args.batch8_512 else [])
    pattern = re.compile(args.filter) if args.filter else None
    out_file = open(args.out, 'w') if args.out else None
    failures = 0

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if out_file:
            out_file.write(line + '\n')
            out_file.flush()

    note(f'torch {torch.__version__} on {device_name}; impls {",".join(impls)}; {args.reps} reps after {args.warmup} '
         f'warm-up runs')
    built_name, cpu_model, n_params = None, None, 0
    for model_name, size, batch in cases:
        name = f'torch unet {model_name} {size}x{size} b{batch}'
        if pattern and not pattern.search(name):
            continue
        cfg = BENCH_MODELS[model_name]
        if built_name != model_name:
            cpu_model = None
            gc.collect()
            torch.manual_seed(0)
            cpu_model = UNet(**cfg)  # random (seeded) weights, on the CPU; each row copies it to the card
            cpu_model.eval()
            built_name = model_name
            n_params = param_count(cpu_model)
            note(f'{model_name}: {n_params / 1e6:.1f} M parameters')
        for impl in impls:
            error = None
            try:
                ms, ms_min, peak = time_row(torch, cpu_model, cfg, batch, size, impl, args.reps, args.warmup)
            except Exception as e:  # out of memory, capture errors, ...: report and go on
                error = first_line(e)
            gc.collect()
            torch.cuda.empty_cache()
            if error is not None:
                failures += 1
                note(f'{name} {impl}: failed ({error})')
                emit({'name': name, 'impl': impl, 'error': error})
                continue
            note(f'{name} {impl}: {ms:.3f} ms/step (min {ms_min:.3f}), peak {peak / 2**20:.0f} MiB')
            emit({'name': name, 'impl': impl, 'device': device_name, 'ms_per_step': round(ms, 4),
                  'ms_per_image': round(ms / batch, 4), 'ms_min_per_step': round(ms_min, 4), 'peak_bytes': peak,
                  'batch': batch, 'size': size, 'params': n_params, 'reps': args.reps, 'torch': torch.__version__})
    if out_file:
        out_file.close()
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='torch_unet.py',
        description='The reference SR3 U-Net in PyTorch: timing on the same card as sr3-wgsl (issue 6), for '
                    'comparison only; --keys / --check verify the architecture against a golden checkpoint.',
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--check', metavar='DIR',
                      help='float64 forward of DIR/forward.safetensors (x_in, noise_level) with DIR/weights.safetensors '
                           'against its eps; also runs --keys; exit 1 over --tol')
    mode.add_argument('--keys', metavar='DIR',
                      help="build the model of DIR/config.json without weights and compare its state_dict names and "
                           "shapes with DIR/weights.safetensors's")
    p.add_argument('--device', default=None, help='device for --check (default: cuda when available, else cpu)')
    p.add_argument('--tol', type=float, default=1e-4, help='--check: max |diff| / max(1, max |eps|) (default 1e-4)')
    p.add_argument('--filter', metavar='REGEX', help='only the timing rows whose name matches REGEX')
    p.add_argument('--reps', type=int, default=50, help='timed forwards per row, median reported (default 50)')
    p.add_argument('--warmup', type=int, default=5, help='untimed forwards before timing (default 5)')
    p.add_argument('--batch8-512', action='store_true', help='also time 64->512 at batch 8 (may run out of memory)')
    p.add_argument('--impls', default=','.join(IMPLS), help=f'comma list of {",".join(IMPLS)} (default: all)')
    p.add_argument('--out', metavar='FILE', help='also write the JSON lines to FILE')
    args = p.parse_args(argv)
    impls = [s.strip() for s in args.impls.split(',') if s.strip()]
    unknown = [s for s in impls if s not in IMPLS]
    if unknown or not impls:
        p.error(f'--impls: unknown {",".join(unknown) or "(empty)"}; choose from {",".join(IMPLS)}')
    args.impls = impls
    if args.reps < 1 or args.warmup < 0:
        p.error('--reps must be >= 1 and --warmup >= 0')
    if args.filter:
        try:
            re.compile(args.filter)
        except re.error as e:
            p.error(f'--filter: {e}')
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch  # lazily: --help and the safetensors reader work without it
    except ImportError as e:
        print(json.dumps({'name': 'torch unet', 'impl': None, 'error': f'PyTorch is not installed ({e})'}), flush=True)
        return 2

    if args.keys:
        return run_keys(torch, args.keys)
    if args.check:
        device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        if device.type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return run_check(torch, args.check, device, args.tol)
    return run_bench(torch, args)


if __name__ == '__main__':
    sys.exit(main())
