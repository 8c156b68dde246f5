# Makes resample-fixture.json: PyTorch and PIL resampling outputs for test/resample.test.ts.
# Run with Debian's packages (python3-torch 1.13, python3-pil 9.4): /usr/bin/python3 make-resample-fixture.py
# Inputs are float32 values (stored exactly); PyTorch computes in float64, PIL in its float ('F') mode.
import json, os
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

rng = np.random.default_rng(20261126)
cases = []

def inp(shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)

def torch_case(name, shape, size, antialias, clamp=False):
    x = inp(shape)
    y = F.interpolate(torch.from_numpy(x.astype(np.float64)), size=size, mode='bicubic', align_corners=False, antialias=antialias)
    if clamp:
        y = y.clamp(-1, 1)
    cases.append(dict(name=name, source='torch', shape=list(shape), size=list(size), antialias=antialias, clamp=clamp,
                      input=x.astype(np.float64).ravel().tolist(), output=y.numpy().ravel().tolist()))

def pil_case(name, shape, size):
    x = inp(shape)
    out = []
    for p in x.reshape(-1, shape[2], shape[3]):
        im = Image.fromarray(p, mode='F').resize((size[1], size[0]), Image.BICUBIC)
        out.append(np.asarray(im, dtype=np.float32).astype(np.float64))
    cases.append(dict(name=name, source='pil', shape=list(shape), size=list(size),
                      input=x.astype(np.float64).ravel().tolist(), output=np.stack(out).ravel().tolist()))

torch_case('torch up x4', (2, 2, 5, 7), (20, 28), False)
torch_case('torch up x3', (1, 1, 4, 6), (12, 18), False)
torch_case('torch up x4 clamped', (1, 3, 3, 4), (12, 16), False, clamp=True)
torch_case('torch down x4 (no antialias)', (1, 1, 12, 16), (3, 4), False)
torch_case('torch antialias down x4', (2, 2, 16, 20), (4, 5), True)
torch_case('torch antialias down x3', (1, 1, 9, 15), (3, 5), True)
torch_case('torch antialias up x2', (1, 1, 5, 4), (10, 8), True)
torch_case('torch antialias 13x10 -> 5x7', (1, 1, 13, 10), (5, 7), True)
pil_case('PIL up x4', (1, 2, 5, 6), (20, 24))
pil_case('PIL down x4', (1, 1, 16, 12), (4, 3))
pil_case('PIL down x3', (1, 1, 9, 12), (3, 4))

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'resample-fixture.json'), 'w') as f:
    json.dump(dict(made_with=f'torch {torch.__version__}, PIL {Image.__version__}, numpy {np.__version__}', cases=cases), f)
