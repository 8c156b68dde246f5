# GMSD's reference values for test/metrics.test.ts, following Xue et al.'s MATLAB code line by line in numpy:
#   Y = 0.2989 R + 0.5870 G + 0.1140 B; aveY = conv2(Y, ones(2)/4, 'same'); Y = aveY(1:2:end, 1:2:end);
#   Ix = conv2(Y, dx, 'same'), Iy = conv2(Y, dx', 'same') with dx = [1 0 -1; 1 0 -1; 1 0 -1]/3;
#   GMS = (2 g1 g2 + 170) ./ (g1.^2 + g2.^2 + 170); score = std2(GMS)
# The images are made by a formula both sides share (see the test). Run: python3 test/reference/gmsd.py
import numpy as np

def conv2_same(x, k):
    # MATLAB conv2(x, k, 'same'): the full convolution's central part, starting at floor(size(k)/2)
    kh, kw = k.shape
    H, W = x.shape
    full = np.zeros((H + kh - 1, W + kw - 1))
    for i in range(kh):
        for j in range(kw):
            full[i:i + H, j:j + W] += k[i, j] * x
    r0, c0 = kh // 2, kw // 2
    return full[r0:r0 + H, c0:c0 + W]

def gmsd(a, b):
    def grad(im):
        y = 0.2989 * im[..., 0] + 0.5870 * im[..., 1] + 0.1140 * im[..., 2]
        y = conv2_same(y, np.ones((2, 2)) / 4)[::2, ::2]
        dx = np.array([[1, 0, -1]] * 3) / 3.0
        return np.sqrt(conv2_same(y, dx) ** 2 + conv2_same(y, dx.T) ** 2)
    g1, g2 = grad(a), grad(b)
    q = (2 * g1 * g2 + 170) / (g1 ** 2 + g2 ** 2 + 170)
    return q.std(ddof=1)

def image(h, w, k):
    yy, xx, cc = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing='ij')
    return np.floor(127.5 + 120 * np.sin(0.37 * xx * (cc + 1) + 0.23 * yy * (k + 1) + k)).astype(np.float64)

for (h, w) in [(16, 16), (13, 18)]:
    print(h, w, repr(gmsd(image(h, w, 0), image(h, w, 1))))
