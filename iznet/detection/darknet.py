"""The YOLO-style face detector network: a Darknet residual backbone, a YOLOv3 feature pyramid, and heads.

Sizes live in a registry (``MODEL_SIZES``), timm-style: ``build_model("cpu", num_anchors=3)``.

* ``darknet53`` is the study's backbone (Darknet-53: widths 32..1024, residual blocks 1-2-8-8-4) with the
  YOLOv3 neck: a model to grow on a GPU.
* ``cpu`` and ``nano`` keep the same shape (residual stages, three-scale pyramid) with a stride-2 stem and
  far fewer channels and blocks, to train and run on a CPU.

The network returns one raw tensor per scale, shaped ``(B, A, H, W, 5 [+ 2K])``: box offsets (4),
objectness logit (1), and optional K landmarks (2K). Decoding is in :mod:`iznet.detection.yolo`.
Strides are 8, 16 and 32 (finest first), so faces from ~10 px to the whole image have a scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DarknetConfig:
    #: Channels of the stem, then of each downsampling stage.
    widths: tuple[int, ...]
    #: Residual blocks in each stage (one entry per stage).
    depths: tuple[int, ...]
    #: Channels of the neck at strides 32, 16, 8 (YOLOv3 uses 512, 256, 128).
    neck: tuple[int, int, int]
    #: Conv pairs (3x3 then 1x1) after the first 1x1 in each neck block (YOLOv3: 2).
    neck_depth: int = 2
    #: 2 makes the stem itself stride 2 (no full-resolution layer: much cheaper on a CPU) and then one stage
    #: fewer is needed; stem stride x 2 ** stages must be 32.
    stem_stride: int = 1
    #: The head's 3x3 conv widens its input by this factor (YOLOv3: 2).
    head_expand: int = 2


MODEL_SIZES: dict[str, DarknetConfig] = {
    # The study's Darknet-53 + YOLOv3 neck (about 61 M parameters with 3 anchors per scale).
    "darknet53": DarknetConfig(widths=(32, 64, 128, 256, 512, 1024), depths=(1, 2, 8, 8, 4), neck=(512, 256, 128)),
    # Same shape, far fewer channels, a stride-2 stem: about 0.3 GFLOP at 256x256, 1.4 at 640x480.
    "cpu": DarknetConfig(
        widths=(16, 24, 48, 96, 160), depths=(1, 2, 2, 1), neck=(64, 48, 32), neck_depth=1, stem_stride=2,
        head_expand=1,
    ),
    # A quarter of ``cpu``'s compute: what an hour on a busy shared 2-core machine can train.
    "tiny": DarknetConfig(
        widths=(12, 16, 32, 64, 96), depths=(1, 1, 2, 1), neck=(48, 32, 24), neck_depth=1, stem_stride=2,
        head_expand=1,
    ),
    # For tests: trains in seconds.
    "nano": DarknetConfig(
        widths=(8, 8, 16, 16, 32), depths=(1, 1, 1, 1), neck=(32, 16, 16), neck_depth=1, stem_stride=2,
        head_expand=1,
    ),
}

STRIDES = (8, 16, 32)


class ConvBN(nn.Sequential):
    """Conv, batch norm, leaky ReLU (0.1): the Darknet unit."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.1, inplace=True),
        )


class Residual(nn.Module):
    """Darknet residual block: 1x1 to half the channels, 3x3 back, add the input."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(ConvBN(c, max(c // 2, 4), 1), ConvBN(max(c // 2, 4), c, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Darknet(nn.Module):
    """The backbone: a stem conv, then five stages of (stride-2 conv, residual blocks); the total stride is 32.

    Returns the features at strides 8, 16 and 32.
    """

    def __init__(self, cfg: DarknetConfig, in_channels: int = 3):
        super().__init__()
        w, d = cfg.widths, cfg.depths
        if cfg.stem_stride * 2 ** len(d) != 32 or len(w) != len(d) + 1:
            raise ValueError("need stem_stride * 2 ** len(depths) == 32 and one width per stage plus the stem")
        self.stem = ConvBN(in_channels, w[0], 3, cfg.stem_stride)
        self.stages = nn.ModuleList(
            nn.Sequential(ConvBN(w[i], w[i + 1], 3, 2), *[Residual(w[i + 1]) for _ in range(d[i])])
            for i in range(len(d))
        )
        self.out_channels = (w[-3], w[-2], w[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= len(self.stages) - 3:
                feats.append(x)
        return feats  # strides 8, 16, 32


def _neck_block(c_in: int, c: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [ConvBN(c_in, c, 1)]
    for _ in range(depth):
        layers += [ConvBN(c, c * 2, 3), ConvBN(c * 2, c, 1)]
    return nn.Sequential(*layers)


class YoloFaceNet(nn.Module):
    """Darknet backbone + YOLOv3 top-down pyramid + one 1x1 prediction conv per scale."""

    def __init__(self, cfg: DarknetConfig, num_anchors: int = 3, num_landmarks: int = 0):
        super().__init__()
        self.cfg = cfg
        self.num_anchors = num_anchors
        self.num_landmarks = num_landmarks
        self.num_outputs = 5 + 2 * num_landmarks
        self.backbone = Darknet(cfg)
        c8, c16, c32 = self.backbone.out_channels
        n32, n16, n8 = cfg.neck
        self.block32 = _neck_block(c32, n32, cfg.neck_depth)
        self.lateral32 = ConvBN(n32, n16, 1)
        self.block16 = _neck_block(c16 + n16, n16, cfg.neck_depth)
        self.lateral16 = ConvBN(n16, n8, 1)
        self.block8 = _neck_block(c8 + n8, n8, cfg.neck_depth)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.heads = nn.ModuleList(
            nn.Sequential(
                ConvBN(c, c * cfg.head_expand, 3), nn.Conv2d(c * cfg.head_expand, num_anchors * self.num_outputs, 1)
            )
            for c in (n8, n16, n32)
        )
        self._init_biases()

    def _init_biases(self) -> None:
        # Objectness starts low (prior ~1%), as in RetinaNet / YOLOv5, so early training is not flooded.
        for head in self.heads:
            conv = head[-1]
            b = conv.bias.data.view(self.num_anchors, self.num_outputs)
            b.zero_()
            b[:, 4] = -4.6

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f8, f16, f32 = self.backbone(x)
        p32 = self.block32(f32)
        p16 = self.block16(torch.cat([self.upsample(self.lateral32(p32)), f16], 1))
        p8 = self.block8(torch.cat([self.upsample(self.lateral16(p16)), f8], 1))
        outs = []
        for head, p in zip(self.heads, (p8, p16, p32)):
            y = head(p)
            b, _, h, w = y.shape
            outs.append(y.view(b, self.num_anchors, self.num_outputs, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return outs  # strides 8, 16, 32


def build_model(size: str, num_anchors: int = 3, num_landmarks: int = 0) -> YoloFaceNet:
    if size not in MODEL_SIZES:
        from iznet.errors import UserInputError

        raise UserInputError(f"unknown model size {size!r}: choose one of {', '.join(MODEL_SIZES)}")
    return YoloFaceNet(MODEL_SIZES[size], num_anchors=num_anchors, num_landmarks=num_landmarks)


def model_config(size: str) -> dict:
    return asdict(MODEL_SIZES[size])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
