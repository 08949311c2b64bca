"""Embedding networks: a registry of architectures that each end in a 128-d L2-normalised vector.

* ``small``  a compact residual net for CPU training and tests (default 96x96 input).
* ``hog`` / ``hog_lbp``  fixed HOG (and uniform-LBP) features with a learned linear projection: the CPU
             recipe for small data such as LFW, where a CNN learning its filters from scratch overfits.
* ``nn1``    FaceNet Table 1 (Zeiler&Fergus-style, 220x220) with maxout fully-connected layers defined as
             Goodfellow et al. (2013): each output unit is the max over ``k`` affine pieces (FaceNet: p=2).
* ``nn2``    FaceNet Table 2 (Inception, 224x224) with L2 pooling where the table says so.
* ``inception_v3``  Szegedy et al. 2015 (299x299), written here (no torchvision), with a 128-d head.
* ``mobilefacenet``  Chen et al. 2018 (112x112): the fast student distilled from an imported teacher.

``create_network(name, **overrides)`` builds one; ``NETWORKS[name]`` is its :class:`NetworkSpec`, which also
says how to preprocess a face crop for it (input size, how much of the crop's centre to keep, normalisation).
Every network accepts ``width`` (channel multiplier) and ``input_size`` overrides so tests can build tiny
versions of the big ones; the defaults are the published sizes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from iznet.errors import UserInputError
from iznet.sizes import EMBEDDING_DIM


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    factory: Callable[..., nn.Module]
    input_size: int
    description: str
    #: default keyword arguments for the factory (recorded in the model card)
    defaults: dict = field(default_factory=dict)


NETWORKS: dict[str, NetworkSpec] = {}


def register(name: str, input_size: int, description: str, **defaults):
    def deco(factory):
        NETWORKS[name] = NetworkSpec(name, factory, input_size, description, dict(defaults))
        return factory

    return deco


def create_network(name: str, embedding_dim: int = EMBEDDING_DIM, **overrides) -> nn.Module:
    """Build the network ``name`` (see :data:`NETWORKS`). Unknown names are a :class:`UserInputError`."""
    if name not in NETWORKS:
        raise UserInputError(f"unknown network {name!r}; choose one of {', '.join(sorted(NETWORKS))}")
    spec = NETWORKS[name]
    kwargs = {"input_size": spec.input_size, **spec.defaults, **overrides}
    model = spec.factory(embedding_dim=embedding_dim, **kwargs)
    model.arch = {"name": name, "embedding_dim": embedding_dim, **kwargs}
    return model


def _c(ch: int, width: float) -> int:
    return max(4, int(round(ch * width)))


class L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=1, eps=1e-8)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int | tuple = 3, s: int = 1, p: int | tuple | None = None):
        if p is None:
            p = (k // 2) if isinstance(k, int) else (k[0] // 2, k[1] // 2)
        super().__init__(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# ----------------------------------------------------------------------------------------------- small
class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class SmallNet(nn.Module):
    """A compact ResNet for CPU: stem, 4 stride-2 stages, then the ArcFace "E" output layer
    (BN, dropout, flatten, FC, BN) which keeps the spatial layout of the face instead of global pooling."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 64, width: float = 1.0,
                 blocks: tuple = (1, 1, 1, 1), dropout: float = 0.2):
        super().__init__()
        chans = [_c(c, width) for c in (32, 64, 128, 256)]
        self.stem = ConvBNReLU(3, chans[0], 3, 1)
        layers, cin = [], chans[0]
        for cout, n in zip(chans, blocks):
            layers.append(_ResBlock(cin, cout, 2))
            layers.extend(_ResBlock(cout, cout, 1) for _ in range(n - 1))
            cin = cout
        self.body = nn.Sequential(*layers)
        side = input_size // 16
        self.head = nn.Sequential(nn.BatchNorm2d(cin), nn.Dropout(dropout), nn.Flatten(),
                                  nn.Linear(cin * side * side, embedding_dim), nn.BatchNorm1d(embedding_dim))
        self.norm = L2Norm()

    def forward(self, x):
        return self.norm(self.head(self.body(self.stem(x))))


register("small", 64, "compact residual net for CPU (~65M multiply-adds at 64x64)")(SmallNet)


# ----------------------------------------------------------------------------------------------- hog
class HOGLayer(nn.Module):
    """Histograms of oriented gradients (Dalal & Triggs) as a fixed, differentiable torch layer: grey image,
    centred [-1,0,1] gradients, unsigned orientation soft-binned into ``bins`` bins weighted by magnitude,
    averaged over ``cell`` x ``cell`` cells, 2x2-cell blocks (stride one cell) L2-Hys normalised, flattened."""

    def __init__(self, cell: int = 8, bins: int = 9):
        super().__init__()
        self.cell, self.bins = cell, bins
        k = torch.tensor([[-1.0, 0.0, 1.0]])
        self.register_buffer("kx", k.view(1, 1, 1, 3), persistent=False)
        self.register_buffer("ky", k.view(1, 1, 3, 1), persistent=False)

    def forward(self, x):
        g = x.mean(1, keepdim=True)
        gx = F.conv2d(F.pad(g, (1, 1, 0, 0), mode="replicate"), self.kx)
        gy = F.conv2d(F.pad(g, (0, 0, 1, 1), mode="replicate"), self.ky)
        mag = torch.sqrt(gx * gx + gy * gy + 1e-8)
        # Unsigned orientation. Where both gradients are 0 the angle is 0 (torch's atan2(0, 0)); the x written
        # as 1 there keeps the exported graph's atan2 (a division) from computing 0/0.
        flat = (gx == 0) & (gy == 0)
        ang = torch.remainder(torch.atan2(gy, torch.where(flat, torch.ones_like(gx), gx)), math.pi)
        pos = ang / (math.pi / self.bins) - 0.5                             # bin centres at (i + 0.5) * width
        lo = torch.floor(pos)
        w_hi = pos - lo
        lo = torch.remainder(lo, self.bins)
        hi = torch.remainder(lo + 1, self.bins)
        # Each pixel votes into its two nearest bins: a comparison with the bin numbers (one-hot) times the
        # weights, the same sums as a scatter-add, in plain element-wise ONNX operators.
        bins = torch.arange(self.bins, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        hist = (mag * (1 - w_hi)) * (lo == bins).to(x.dtype) + (mag * w_hi) * (hi == bins).to(x.dtype)
        cells = F.avg_pool2d(hist, self.cell)                               # (N, bins, h, w)
        blocks = F.unfold(cells, 2)                                         # (N, bins*4, nblocks)
        blocks = F.normalize(blocks, dim=1, eps=1e-6).clamp(max=0.2)
        blocks = F.normalize(blocks, dim=1, eps=1e-6)
        return blocks.flatten(1)


def _uniform_lbp_table() -> torch.Tensor:
    """Map the 256 8-bit LBP codes to the 58 "uniform" patterns (at most two 0/1 transitions around the
    circle: edges, corners, spots) and one bin for all the others."""
    table, nxt = torch.full((256,), 58, dtype=torch.long), 0
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        if sum(bits[k] != bits[(k + 1) % 8] for k in range(8)) <= 2:
            table[code], nxt = nxt, nxt + 1
    return table


class LBPLayer(nn.Module):
    """Uniform local binary pattern histograms (Ojala et al. 2002; Ahonen et al. 2006 for faces) as a fixed
    torch layer: each grey pixel's 8 neighbours at ``radius`` thresholded against it, the code mapped to one of
    59 uniform-pattern bins, histogrammed over ``cell`` x ``cell`` cells and square-rooted (the Hellinger
    map, so that a few large bins do not dominate a linear projection). Texture where HOG sees edges: the two
    together verify LFW faces far better than either alone (docs/embedding.md)."""

    BINS = 59

    def __init__(self, cell: int = 8, radius: int = 1):
        super().__init__()
        self.cell, self.radius = cell, radius
        self.register_buffer("table", _uniform_lbp_table(), persistent=False)
        r = radius
        self.offsets = [(-r, -r), (-r, 0), (-r, r), (0, r), (r, r), (r, 0), (r, -r), (0, -r)]

    def forward(self, x):
        g = x.mean(1, keepdim=True)
        h, w = g.shape[2:]
        r = self.radius
        padded = F.pad(g, (r, r, r, r), mode="replicate")        # a code for every pixel, so cells tile exactly
        code = torch.zeros_like(g, dtype=torch.long)
        for k, (dy, dx) in enumerate(self.offsets):
            neighbour = padded[:, :, r + dy:r + dy + h, r + dx:r + dx + w]
            code = code + (neighbour >= g).long() * (1 << k)
        onehot = F.one_hot(self.table[code[:, 0]], self.BINS).permute(0, 3, 1, 2).to(x.dtype)
        hist = F.avg_pool2d(onehot, self.cell)                    # (N, 59, h/cell, w/cell), each cell sums to 1
        return torch.sqrt(hist).flatten(1)


class HOGNet(nn.Module):
    """A fast CPU embedder for tiny data: fixed features (multi-scale HOG, optionally uniform-LBP histograms),
    standardised (BatchNorm without affine), dropout, and a learned linear (or one-hidden-layer) projection to
    the embedding. It trains in minutes on a CPU and needs far fewer samples than a CNN learning its filters
    from scratch."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 64, width: float = 1.0,
                 cells: tuple = (8, 16), lbp_cells: tuple = (), hidden: int = 0, dropout: float = 0.5):
        super().__init__()
        if any(input_size % c for c in lbp_cells):
            raise UserInputError(f"input size {input_size} is not a multiple of the LBP cells {tuple(lbp_cells)}")
        self.hogs = nn.ModuleList(HOGLayer(c) for c in cells)
        self.lbps = nn.ModuleList(LBPLayer(c) for c in lbp_cells)
        with torch.no_grad():
            dim = self.features(torch.zeros(1, 3, input_size, input_size)).shape[1]
        self.feature_dim = dim
        hidden = int(hidden * width)
        layers: list[nn.Module] = [nn.BatchNorm1d(dim, affine=False), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout / 2)]
            dim = hidden
        layers.append(nn.Linear(dim, embedding_dim))
        self.head = nn.Sequential(*layers)
        self.norm = L2Norm()

    def features(self, x):
        return torch.cat([m(x) for m in (*self.hogs, *self.lbps)], 1)

    def forward(self, x):
        return self.norm(self.head(self.features(x)))


register("hog", 64, "fixed multi-scale HOG + learned projection: trains in minutes on a CPU")(HOGNet)
register("hog_lbp", 64, "fixed multi-scale HOG + uniform-LBP histograms + learned projection: the LFW CPU recipe",
         lbp_cells=(8,))(HOGNet)


# ----------------------------------------------------------------------------------------------- NN1
class Maxout(nn.Module):
    """Goodfellow et al. (2013) maxout unit as a layer: ``h_i(x) = max_j (x^T W_ij + b_ij)``, j = 1..k.

    One affine map to ``out_features * k`` values, viewed as (out_features, k), max over the pieces. This is
    what FaceNet Table 1 means by "maxout p=2" (fc1: 7x7x256 -> 1x32x128 has 103M parameters = 12544*4096*2).
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x):
        z = self.linear(x).view(x.shape[0], self.out_features, self.pieces)
        return z.max(dim=2).values


class NN1(nn.Module):
    """FaceNet Table 1 (Zeiler&Fergus based, 220x220x3). ``rnorm`` = local response normalisation."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 220, width: float = 1.0,
                 fc_width: int = 4096, pieces: int = 2, dropout: float = 0.0):
        super().__init__()
        c = lambda ch: _c(ch, width)  # noqa: E731
        self.features = nn.Sequential(
            ConvBNReLU(3, c(64), 7, 2, 3),                       # conv1  110x110x64
            nn.MaxPool2d(3, 2, 1),                               # pool1  55x55x64
            nn.LocalResponseNorm(5),                             # rnorm1
            ConvBNReLU(c(64), c(64), 1), ConvBNReLU(c(64), c(192), 3),  # conv2a, conv2
            nn.LocalResponseNorm(5),                             # rnorm2
            nn.MaxPool2d(3, 2, 1),                               # pool2  28x28x192
            ConvBNReLU(c(192), c(192), 1), ConvBNReLU(c(192), c(384), 3),  # conv3a, conv3
            nn.MaxPool2d(3, 2, 1),                               # pool3  14x14x384
            ConvBNReLU(c(384), c(384), 1), ConvBNReLU(c(384), c(256), 3),  # conv4a, conv4
            ConvBNReLU(c(256), c(256), 1), ConvBNReLU(c(256), c(256), 3),  # conv5a, conv5
            ConvBNReLU(c(256), c(256), 1), ConvBNReLU(c(256), c(256), 3),  # conv6a, conv6
            nn.MaxPool2d(3, 2, 1),                               # pool4  7x7x256
            nn.Flatten(),                                        # concat
        )
        with torch.no_grad():
            flat = self.features.eval()(torch.zeros(1, 3, input_size, input_size)).shape[1]
        self.features.train()
        fcw = max(8, int(round(fc_width * width)))
        self.fc = nn.Sequential(
            Maxout(flat, fcw, pieces), nn.Dropout(dropout),   # fc1  maxout p=2
            Maxout(fcw, fcw, pieces), nn.Dropout(dropout),    # fc2  maxout p=2
            nn.Linear(fcw, embedding_dim),                    # fc7128
        )
        self.norm = L2Norm()

    def forward(self, x):
        return self.norm(self.fc(self.features(x)))


register("nn1", 220, "FaceNet NN1 (Zeiler&Fergus + maxout FC, ~140M params, 220x220)")(NN1)


# ----------------------------------------------------------------------------------------------- NN2
class L2Pool(nn.Module):
    """L2 pooling: the root of the mean of squares over each window (FaceNet's "L2" pool)."""

    def __init__(self, k: int = 3, s: int = 1, p: int = 1):
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x):
        return torch.sqrt(F.avg_pool2d(x * x, self.k, self.s, self.p, count_include_pad=False) + 1e-6)


class FaceNetInception(nn.Module):
    """One row of FaceNet Table 2: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool (max|L2) + projection.
    ``stride`` 2 rows have no 1x1 branch and pass the pooled input through unprojected."""

    def __init__(self, cin, n1, r3, n3, r5, n5, pool: str, proj: int, stride: int = 1):
        super().__init__()
        self.b1 = ConvBNReLU(cin, n1, 1) if n1 else None
        self.b3 = nn.Sequential(ConvBNReLU(cin, r3, 1), ConvBNReLU(r3, n3, 3, stride))
        self.b5 = nn.Sequential(ConvBNReLU(cin, r5, 1), ConvBNReLU(r5, n5, 5, stride)) if n5 else None
        pool_layer = nn.MaxPool2d(3, stride, 1) if pool == "max" else L2Pool(3, stride, 1)
        self.bp = nn.Sequential(pool_layer, ConvBNReLU(cin, proj, 1)) if proj else pool_layer
        self.out_channels = (n1 or 0) + n3 + (n5 or 0) + (proj or cin)

    def forward(self, x):
        outs = [b(x) for b in (self.b1, self.b3, self.b5, self.bp) if b is not None]
        return torch.cat(outs, 1)


class NN2(nn.Module):
    """FaceNet Table 2 (Inception, 224x224x3), 128-d output."""

    ROWS = [  # name: (#1x1, #3x3r, #3x3, #5x5r, #5x5, pool, proj, stride)
        ("3a", 64, 96, 128, 16, 32, "max", 32, 1),
        ("3b", 64, 96, 128, 32, 64, "l2", 64, 1),
        ("3c", 0, 128, 256, 32, 64, "max", 0, 2),
        ("4a", 256, 96, 192, 32, 64, "l2", 128, 1),
        ("4b", 224, 112, 224, 32, 64, "l2", 128, 1),
        ("4c", 192, 128, 256, 32, 64, "l2", 128, 1),
        ("4d", 160, 144, 288, 32, 64, "l2", 128, 1),
        ("4e", 0, 160, 256, 64, 128, "max", 0, 2),
        ("5a", 384, 192, 384, 48, 128, "l2", 128, 1),
        ("5b", 384, 192, 384, 48, 128, "max", 128, 1),
    ]

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 224,
                 width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        c = lambda ch: _c(ch, width) if ch else 0  # noqa: E731
        self.stem = nn.Sequential(
            ConvBNReLU(3, c(64), 7, 2, 3), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),  # conv1, pool+norm
            ConvBNReLU(c(64), c(64), 1), ConvBNReLU(c(64), c(192), 3),                     # inception (2)
            nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2, 1),                                  # norm + max pool
        )
        blocks, cin = [], c(192)
        for name, n1, r3, n3, r5, n5, pool, proj, stride in self.ROWS:
            blk = FaceNetInception(cin, c(n1), c(r3), c(n3), c(r5), c(n5), pool, c(proj), stride)
            blocks.append(blk)
            cin = blk.out_channels
        self.inception = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_dim)
        self.norm = L2Norm()

    def forward(self, x):
        x = self.pool(self.inception(self.stem(x))).flatten(1)
        return self.norm(self.fc(self.drop(x)))


register("nn2", 224, "FaceNet NN2 (Inception with L2 pooling, ~7.5M params, 224x224)")(NN2)


# ----------------------------------------------------------------------------------------------- InceptionV3
class _IncA(nn.Module):
    def __init__(self, cin, pool_features, c):
        super().__init__()
        self.b1 = ConvBNReLU(cin, c(64), 1)
        self.b5 = nn.Sequential(ConvBNReLU(cin, c(48), 1), ConvBNReLU(c(48), c(64), 5))
        self.b3 = nn.Sequential(ConvBNReLU(cin, c(64), 1), ConvBNReLU(c(64), c(96), 3), ConvBNReLU(c(96), c(96), 3))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBNReLU(cin, pool_features, 1))
        self.out_channels = c(64) + c(64) + c(96) + pool_features

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(x)], 1)


class _IncB(nn.Module):  # grid reduction 35 -> 17
    def __init__(self, cin, c):
        super().__init__()
        self.b3 = ConvBNReLU(cin, c(384), 3, 2, 0)
        self.b3d = nn.Sequential(ConvBNReLU(cin, c(64), 1), ConvBNReLU(c(64), c(96), 3),
                                 ConvBNReLU(c(96), c(96), 3, 2, 0))
        self.bp = nn.MaxPool2d(3, 2)
        self.out_channels = c(384) + c(96) + cin

    def forward(self, x):
        return torch.cat([self.b3(x), self.b3d(x), self.bp(x)], 1)


class _IncC(nn.Module):  # factorised 7x7
    def __init__(self, cin, c7, c):
        super().__init__()
        self.b1 = ConvBNReLU(cin, c(192), 1)
        self.b7 = nn.Sequential(ConvBNReLU(cin, c7, 1), ConvBNReLU(c7, c7, (1, 7)), ConvBNReLU(c7, c(192), (7, 1)))
        self.b7d = nn.Sequential(ConvBNReLU(cin, c7, 1), ConvBNReLU(c7, c7, (7, 1)), ConvBNReLU(c7, c7, (1, 7)),
                                 ConvBNReLU(c7, c7, (7, 1)), ConvBNReLU(c7, c(192), (1, 7)))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBNReLU(cin, c(192), 1))
        self.out_channels = 4 * c(192)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.b7d(x), self.bp(x)], 1)


class _IncD(nn.Module):  # grid reduction 17 -> 8
    def __init__(self, cin, c):
        super().__init__()
        self.b3 = nn.Sequential(ConvBNReLU(cin, c(192), 1), ConvBNReLU(c(192), c(320), 3, 2, 0))
        self.b7 = nn.Sequential(ConvBNReLU(cin, c(192), 1), ConvBNReLU(c(192), c(192), (1, 7)),
                                ConvBNReLU(c(192), c(192), (7, 1)), ConvBNReLU(c(192), c(192), 3, 2, 0))
        self.bp = nn.MaxPool2d(3, 2)
        self.out_channels = c(320) + c(192) + cin

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), self.bp(x)], 1)


class _IncE(nn.Module):  # expanded filter bank
    def __init__(self, cin, c):
        super().__init__()
        self.b1 = ConvBNReLU(cin, c(320), 1)
        self.b3 = ConvBNReLU(cin, c(384), 1)
        self.b3a, self.b3b = ConvBNReLU(c(384), c(384), (1, 3)), ConvBNReLU(c(384), c(384), (3, 1))
        self.b3d = nn.Sequential(ConvBNReLU(cin, c(448), 1), ConvBNReLU(c(448), c(384), 3))
        self.b3da, self.b3db = ConvBNReLU(c(384), c(384), (1, 3)), ConvBNReLU(c(384), c(384), (3, 1))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBNReLU(cin, c(192), 1))
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x):
        y3, yd = self.b3(x), self.b3d(x)
        return torch.cat([self.b1(x), self.b3a(y3), self.b3b(y3), self.b3da(yd), self.b3db(yd), self.bp(x)], 1)


class InceptionV3(nn.Module):
    """Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture", 2015), 299x299, without the
    auxiliary classifier, ending in dropout + FC 128 + L2 normalisation."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 299,
                 width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        c = lambda ch: _c(ch, width)  # noqa: E731
        self.stem = nn.Sequential(
            ConvBNReLU(3, c(32), 3, 2, 0), ConvBNReLU(c(32), c(32), 3, 1, 0), ConvBNReLU(c(32), c(64), 3, 1, 1),
            nn.MaxPool2d(3, 2), ConvBNReLU(c(64), c(80), 1), ConvBNReLU(c(80), c(192), 3, 1, 0), nn.MaxPool2d(3, 2),
        )
        blocks, cin = [], c(192)
        for make in (
            lambda i: _IncA(i, c(32), c), lambda i: _IncA(i, c(64), c), lambda i: _IncA(i, c(64), c),
            lambda i: _IncB(i, c),
            lambda i: _IncC(i, c(128), c), lambda i: _IncC(i, c(160), c), lambda i: _IncC(i, c(160), c),
            lambda i: _IncC(i, c(192), c),
            lambda i: _IncD(i, c), lambda i: _IncE(i, c), lambda i: _IncE(i, c),
        ):
            blk = make(cin)
            blocks.append(blk)
            cin = blk.out_channels
        self.mixed = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_dim)
        self.norm = L2Norm()

    def forward(self, x):
        x = self.pool(self.mixed(self.stem(x))).flatten(1)
        return self.norm(self.fc(self.drop(x)))


# ----------------------------------------------------------------------------------------------- mobilefacenet
class _DWBlock(nn.Module):
    """MobileNetV2's inverted residual with PReLU, as MobileFaceNet uses it."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018): a MobileNetV2 body with PReLU, 112x112 in, a global depthwise
    convolution (GDConv) instead of average pooling so each face position keeps its own weight, then a linear
    128-d layer. ~1M parameters, ~220M multiply-adds at 112x112; ``width`` scales the channels."""

    #: (expansion, channels, repeats, stride) after the stem, as in the paper's Table 1
    SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, input_size: int = 112, width: float = 1.0):
        super().__init__()
        c64 = _c(64, width)
        self.stem = nn.Sequential(nn.Conv2d(3, c64, 3, 2, 1, bias=False), nn.BatchNorm2d(c64), nn.PReLU(c64),
                                  nn.Conv2d(c64, c64, 3, 1, 1, groups=c64, bias=False), nn.BatchNorm2d(c64),
                                  nn.PReLU(c64))
        layers, cin = [], c64
        for t, c, n, s in self.SETTING:
            cout = _c(c, width)
            for i in range(n):
                layers.append(_DWBlock(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.body = nn.Sequential(*layers)
        c512 = _c(512, width)
        side = math.ceil(input_size / 16)
        self.head = nn.Sequential(
            nn.Conv2d(cin, c512, 1, bias=False), nn.BatchNorm2d(c512), nn.PReLU(c512),
            nn.Conv2d(c512, c512, side, groups=c512, bias=False), nn.BatchNorm2d(c512),  # GDConv
            nn.Flatten(), nn.Linear(c512, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim))
        self.norm = L2Norm()

    def forward(self, x):
        return self.norm(self.head(self.body(self.stem(x))))


register("mobilefacenet", 112, "MobileFaceNet (~1M params, ~220M multiply-adds at 112x112)")(MobileFaceNet)


register("inception_v3", 299, "Inception-v3 written here (~22M params, 299x299)")(InceptionV3)


def describe() -> list[dict]:
    return [{"name": s.name, "input_size": s.input_size, "description": s.description} for s in NETWORKS.values()]


__all__ = ["NETWORKS", "NetworkSpec", "create_network", "register", "Maxout", "L2Pool", "describe", "asdict"]
