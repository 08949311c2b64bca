"""dlib's ResNet face descriptor, read from its own file into plain torch: the 128-d vector dlib computes.

The weights are Davis King's CC0 ``dlib_face_recognition_resnet_model_v1.dat`` (see :mod:`iznet.imported`),
a serialized dlib DNN of this type (``tools/python/src/face_recognition.cpp`` in dlib)::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    alevel4 = 3 x ares<32>   alevel3 = ares_down<64> + 3 x ares<64>   alevel2 = ares_down<128> + 2 x ares<128>
    alevel1 = ares_down<256> + 2 x ares<256>   alevel0 = ares_down<256>
    ares<N>      = relu(block<N, stride 1>(x) + x)
    ares_down<N> = relu(block<N, stride 2>(x) (+) avg_pool<2,2,2,2>(x))       (+): zero-padded add, see below
    block<N, s>  = affine(con<N,3,3,1,1>(relu(affine(con<N,3,3,s,s>(x)))))

What decides exactness (each checked against dlib's source, ``dlib/dnn/layers.h``, ``input.h``,
``cuda/cpu_dlib.cpp``):

- input: ``(pixel - mean) / 256`` per RGB channel, the means stored in the file (122.782, 117.001, 104.298);
- padding is dlib's default ``stride != 1 ? 0 : size/2``: stride-2 convolutions and pools are unpadded, the
  3x3 stride-1 convolutions pad 1; output sizes floor (``1 + (in + 2 pad - window) / stride``), so the
  maps go 150 -> 72 -> 35 (max pool) -> 17 -> 8 -> 4 -> 2 -> 1 (global average);
- every convolution has a bias (the file's ``con_4`` layers predate dlib's bias-free option), followed by
  batch norm stored already folded as ``affine`` (per-channel gamma, beta: ``x * gamma + beta``);
- ``add_prev`` adds tensors of different shapes by zero-padding the smaller one at the end of every
  dimension: the down blocks have no projection shortcut; when the channels grow (32 -> 64 ...) the
  pooled input fills the first channels, and in alevel1 the 3x3 block output is added to the top-left of
  the 4x4 pooled shortcut (8 -> 3 by the unpadded 3x3/2 convolution, 8 -> 4 by the 2x2/2 pool), as in
  alevel0 (4 -> 1 and 4 -> 2);
- the final ``fc_no_bias`` is ``x @ W`` with ``W`` stored (inputs, outputs) = (256, 128); ``loss_metric``
  outputs the vector as is (dlib does not normalise it; its same-person threshold is a distance of 0.6).

:class:`DlibResNet` takes RGB chips as dlib's ``get_face_chip`` cuts them (see :mod:`iznet.data.chip`; the
project's images are BGR: flip them to RGB first) and returns the raw descriptor. The preprocessing is part
of the module, so its ONNX export (:func:`export_onnx`) takes the same uint8-valued NHWC RGB input.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iznet.errors import UserInputError
from iznet.sizes import EMBEDDING_DIM

#: Side of the chips the network takes (``input_rgb_image_sized<150>``).
INPUT_SIZE = 150
#: Length of the descriptor.
DIM = EMBEDDING_DIM
#: dlib's same-person threshold on the Euclidean distance between two descriptors.
SAME_PERSON_DISTANCE = 0.6

#: (channels, down) of the residual blocks from the input up: alevel4, alevel3, alevel2, alevel1, alevel0.
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)


# --- dlib's serialization -----------------------------------------------------------------------------

class DlibFormatError(UserInputError):
    """The file is not the serialized dlib network this reader knows (the message says where and why)."""


class _Stream:
    """dlib's ``serialize``/``deserialize`` primitives over bytes (``dlib/serialize.h``)."""

    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = memoryview(data), 0, path

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.path}: not the dlib ResNet face descriptor this reader knows: {what} "
                               f"(at byte {self.pos} of {len(self.data)})")

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.fail(f"the file ends early (wanted {n} more bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, signed: bool = True) -> int:
        """An integer: a control byte (bit 7: negative, low 4 bits: length) then that many bytes, LSB first."""
        ctrl = self._take(1)[0]
        size, neg = ctrl & 0x0F, bool(ctrl & 0x80)
        if ctrl & 0x70 or size == 0 or size > 8 or (neg and not signed):
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if neg else value

    def uint(self) -> int:
        return self.int(signed=False)

    def float(self) -> float:
        """A float or double: int64 mantissa and int16 exponent (``float_details``), value m * 2**e."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("a floating point number in dlib's old text format")
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        c = bytes(self._take(1))
        if c not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"bad bool byte {c!r}")
        return c == b"1"

    def string(self) -> str:
        n = self.uint()
        if n > 1 << 20:
            raise self.fail(f"a string of {n} bytes")
        try:
            return bytes(self._take(n)).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("a string that is not ASCII") from None

    def version(self, *expected: int, what: str) -> int:
        start = self.pos
        try:
            v = self.int()
        except DlibFormatError:
            self.pos = start
            raise self.fail(f"expected the version number of {what}") from None
        if v not in expected:
            self.pos = start
            raise self.fail(f"{what} has version {v}, expected {' or '.join(map(str, expected))}")
        return v

    def tag(self, *expected: str, what: str) -> str:
        start = self.pos
        try:
            s = self.string()
        except DlibFormatError:
            self.pos = start
            raise self.fail(f"expected {what} ({' or '.join(map(repr, expected))})") from None
        if s not in expected:
            self.pos = start
            raise self.fail(f"found layer {s!r} where {what} ({' or '.join(map(repr, expected))}) belongs")
        return s

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version 2, (num_samples, k, nr, nc), then little-endian float32s."""
        self.version(2, what="a tensor")
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"a tensor of shape {shape}")
        n = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * n)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor`` (a shape inside a layer's flat ``params``): version 1, four dimensions."""
        self.version(1, what="an alias tensor")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# --- the file's contents ------------------------------------------------------------------------------

@dataclass
class Conv:
    weight: np.ndarray   # (out, in, kh, kw) float32, dlib's own layout (and torch's)
    bias: np.ndarray     # (out,)
    stride: int
    padding: int


@dataclass
class Affine:
    gamma: np.ndarray    # (channels,): batch norm folded, y = x * gamma + beta
    beta: np.ndarray


@dataclass
class Block:
    conv1: Conv
    affine1: Affine
    conv2: Conv
    affine2: Affine
    down: bool


@dataclass
class DlibNetFile:
    """What :func:`read_dlib_resnet` found: the weights and what dlib's layers said about themselves."""

    means: tuple[float, float, float]           # RGB means the input layer subtracts
    stem_conv: Conv
    stem_affine: Affine
    blocks: list[Block]
    fc: np.ndarray                              # (256, 128): descriptor = pooled @ fc
    margin: float                               # loss_metric's training margin and distance threshold
    distance_threshold: float
    layers: list[str] = field(default_factory=list)  # each layer's version string, input first


def _spec() -> list[tuple]:
    """The wrappers of ``anet_type`` as they nest from the loss down to the input, one tuple each:
    ``("layer", kind, *params)``, ``("tag", id)`` (add_tag_layer) or ``("skip", id)`` (add_skip_layer)."""
    spec: list[tuple] = [("layer", "fc", DIM), ("layer", "avg_pool", 0, 0, 1, 1, 0, 0)]
    for n, down in reversed(BLOCKS):
        stride = 2 if down else 1
        top = [("layer", "relu"), ("layer", "add_prev")]
        if down:
            top += [("layer", "avg_pool", 2, 2, 2, 2, 0, 0), ("skip", 1), ("tag", 2)]
        pad = 0 if down else 1  # dlib's default padding: none for strided windows, size // 2 otherwise
        spec += top + [("layer", "affine"), ("layer", "con", n, 3, 3, 1, 1, 1, 1), ("layer", "relu"),
                       ("layer", "affine"), ("layer", "con", n, 3, 3, stride, stride, pad, pad), ("tag", 1)]
    spec += [("layer", "max_pool", 3, 3, 2, 2, 0, 0), ("layer", "relu"), ("layer", "affine"),
             ("layer", "con", 32, 7, 7, 2, 2, 0, 0)]
    return spec


def _read_details(s: _Stream, item: tuple) -> tuple[str, object]:
    kind = item[1]
    if kind == "con":
        n, kh, kw, sy, sx, py, px = item[2:]
        version = s.tag("con_4", "con_5", "con_6", what="a convolution")
        params = s.tensor()
        got = (s.int(), s.int(), s.int(), s.int(), s.int(), s.int(), s.int())
        if got != (n, kh, kw, sy, sx, py, px):
            raise s.fail(f"a convolution with (filters, rows, cols, strides, paddings) {got}, expected "
                         f"{(n, kh, kw, sy, sx, py, px)}")
        filters, biases = s.alias(), s.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.float()
        use_bias = s.bool() if version in ("con_5", "con_6") else True
        if version == "con_6" and s.bool():
            raise s.fail("a convolution with a fused relu")
        nf, k, fr, fc = filters
        if (nf, fr, fc) != (n, kh, kw) or k <= 0:
            raise s.fail(f"convolution filters of shape {filters}")
        size = nf * k * fr * fc
        want = size + (n if use_bias else 0)
        if params.size != want or (use_bias and tuple(biases) != (1, n, 1, 1)):
            raise s.fail(f"convolution params of {params.size} values for filters {filters}, biases {biases}")
        flat = params.reshape(-1)
        bias = flat[size:].copy() if use_bias else np.zeros(n, np.float32)
        return version, Conv(flat[:size].reshape(nf, k, fr, fc).copy(), bias, sy, py)
    if kind == "affine":
        version = s.tag("affine_", "affine_2", what="a folded batch norm (affine)")
        params, gamma, beta = s.tensor(), s.alias(), s.alias()
        mode = s.int()
        if version == "affine_2" and s.bool():
            raise s.fail("a disabled affine layer")
        c = gamma[1]
        if mode != 0 or gamma != (1, c, 1, 1) or beta != gamma or params.size != 2 * c:
            raise s.fail(f"an affine layer in mode {mode} with gamma {gamma}, beta {beta}, {params.size} params "
                         "(expected per-channel CONV_MODE, 0)")
        flat = params.reshape(-1)
        return version, Affine(flat[:c].copy(), flat[c:].copy())
    if kind == "relu":
        version = s.tag("relu_", "relu_2", what="a relu")
        if version == "relu_2" and s.bool():
            raise s.fail("a disabled relu")
        return version, None
    if kind in ("max_pool", "avg_pool"):
        version = s.tag(f"{kind}_2", what=f"a {kind.replace('_', ' ')}")
        got = tuple(s.int() for _ in range(6))
        if got != tuple(item[2:]):
            raise s.fail(f"a {kind} with (rows, cols, strides, paddings) {got}, expected {tuple(item[2:])}")
        return version, None
    if kind == "add_prev":
        return s.tag("add_prev_", what="an add_prev"), None
    if kind == "fc":
        version = s.tag("fc_2", "fc_3", what="the fully connected layer")
        outputs, inputs = s.uint(), s.uint()
        params, weights, _biases = s.tensor(), s.alias(), s.alias()
        bias_mode = s.int()
        for _ in range(4):
            s.float()
        if version == "fc_3":
            s.bool()
        if (outputs, inputs, bias_mode) != (DIM, 256, 1) or weights[:2] != (256, DIM) or params.size != 256 * DIM:
            raise s.fail(f"an fc layer {inputs} -> {outputs}, bias mode {bias_mode}, weights {weights}, "
                         f"{params.size} params (expected fc_no_bias 256 -> 128)")
        return version, params.reshape(256, DIM).copy()
    raise AssertionError(kind)


def _trailer(s: _Stream, add_layer_version: int, input_layer: bool) -> None:
    """What ``add_layer`` writes after its layer: three flags and its (training-time) tensors."""
    for _ in range(3):
        s.bool()
    s.tensor()          # x_grad
    s.tensor()          # cached_output
    if input_layer:
        s.tensor()      # grad_final
        if add_layer_version >= 3:
            s.uint()    # sample_expansion_factor
    elif add_layer_version == 2:
        s.tensor()      # params_grad


def read_dlib_resnet(path: str | Path) -> DlibNetFile:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat``; :class:`DlibFormatError` (a
    :class:`~iznet.errors.UserInputError`) when the file is anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserInputError(f"cannot read the dlib model file {path}: {e.strerror or e}") from None
    s = _Stream(data, str(path))
    s.version(1, what="the loss layer (add_loss_layer)")
    loss = s.tag("loss_metric_", "loss_metric_2", what="the metric loss (loss_metric)")
    margin, thresh = (s.float(), s.float()) if loss == "loss_metric_2" else (0.1, 0.75)

    spec = _spec()
    versions: list[int | None] = []
    for i, item in enumerate(spec):  # the nested headers, outside in
        if item[0] == "layer":
            last = i == len(spec) - 1
            versions.append(s.version(*((2, 3) if last else (1, 2)), what=f"add_layer<{item[1]}>"))
        else:
            versions.append(s.version(1, what=f"add_{item[0]}_layer<{item[1]}>"))
    s.tag("input_rgb_image_sized", what="the input layer")
    means = (s.float(), s.float(), s.float())
    if (s.uint(), s.uint()) != (INPUT_SIZE, INPUT_SIZE):
        raise s.fail(f"an input layer that is not {INPUT_SIZE}x{INPUT_SIZE}")

    found: list[object] = []
    names: list[str] = ["input_rgb_image_sized"]
    for i in range(len(spec) - 1, -1, -1):  # each layer's own data, inside out
        item = spec[i]
        if item[0] != "layer":
            continue
        name, value = _read_details(s, item)
        _trailer(s, versions[i], input_layer=i == len(spec) - 1)  # type: ignore[arg-type]
        names.append(name)
        found.append(value)
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left over after the network")

    vals = iter(v for v in found if v is not None)
    stem_conv, stem_affine = next(vals), next(vals)
    blocks = []
    channels = 32
    for n, down in BLOCKS:
        c1, a1, c2, a2 = next(vals), next(vals), next(vals), next(vals)
        if c1.weight.shape[1] != channels or c2.weight.shape[1] != n or a1.gamma.size != n or a2.gamma.size != n:
            raise DlibFormatError(f"{path}: a residual block's shapes do not chain ({channels} -> {n} channels)")
        blocks.append(Block(c1, a1, c2, a2, down))
        channels = n
    fc = next(vals)
    if stem_conv.weight.shape[1] != 3 or stem_affine.gamma.size != 32:
        raise DlibFormatError(f"{path}: the first convolution does not take RGB into 32 channels")
    return DlibNetFile(means=means, stem_conv=stem_conv, stem_affine=stem_affine, blocks=blocks, fc=fc,
                       margin=margin, distance_threshold=thresh, layers=names)


# --- the network ----------------------------------------------------------------------------------------

class _ConvAffine(nn.Module):
    """dlib's ``affine<con<...>>``: a biased convolution, then the folded batch norm as its own mul/add."""

    def __init__(self, conv: Conv, affine: Affine):
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.weight = nn.Parameter(torch.from_numpy(conv.weight), requires_grad=False)
        self.bias = nn.Parameter(torch.from_numpy(conv.bias), requires_grad=False)
        self.gamma = nn.Parameter(torch.from_numpy(affine.gamma).view(1, -1, 1, 1), requires_grad=False)
        self.beta = nn.Parameter(torch.from_numpy(affine.beta).view(1, -1, 1, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        return y * self.gamma + self.beta


def _conv_out(size: int, k: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - k) // stride


class _Residual(nn.Module):
    def __init__(self, block: Block, in_channels: int, in_size: int):
        super().__init__()
        self.down = block.down
        self.first = _ConvAffine(block.conv1, block.affine1)
        self.second = _ConvAffine(block.conv2, block.affine2)
        out_c = block.conv2.weight.shape[0]
        out = _conv_out(in_size, 3, block.conv1.stride, block.conv1.padding)
        short, short_c = (_conv_out(in_size, 2, 2, 0), in_channels) if self.down else (in_size, in_channels)
        size, c = max(out, short), max(out_c, short_c)
        # add_prev's zero padding, as F.pad amounts (last dims first: W, H, C), for each branch
        self.pad_branch = (0, size - out, 0, size - out, 0, c - out_c)
        self.pad_short = (0, size - short, 0, size - short, 0, c - short_c)
        self.out_channels, self.out_size = c, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(F.relu(self.first(x)))
        s = F.avg_pool2d(x, 2, 2) if self.down else x
        if any(self.pad_branch):
            y = F.pad(y, self.pad_branch)
        if any(self.pad_short):
            s = F.pad(s, self.pad_short)
        return F.relu(y + s)


class DlibResNet(nn.Module):
    """dlib's face descriptor: ``(N, 150, 150, 3)`` RGB pixel values (uint8 or float, 0..255) -> ``(N, 128)``
    float32, the raw (not normalised) vector of dlib's ``compute_face_descriptor`` on the same chips.

    The input must be RGB in dlib's chip geometry (:func:`iznet.data.chip.dlib_chip_matrix`); convert the
    project's BGR images with ``img[..., ::-1]`` before. Weights are frozen float32 parameters; the
    preprocessing (``(x - mean) / 256``, NHWC -> NCHW) runs inside, so an ONNX export has it too.
    """

    def __init__(self, net: DlibNetFile):
        super().__init__()
        self.register_buffer("mean", torch.tensor(net.means, dtype=torch.float32).view(1, 1, 1, 3))
        self.stem = _ConvAffine(net.stem_conv, net.stem_affine)
        channels, size = 32, _conv_out(_conv_out(INPUT_SIZE, 7, 2, 0), 3, 2, 0)
        blocks = []
        for b in net.blocks:
            blocks.append(_Residual(b, channels, size))
            channels, size = blocks[-1].out_channels, blocks[-1].out_size
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Parameter(torch.from_numpy(net.fc), requires_grad=False)  # (256, 128), inputs x outputs
        self.margin, self.distance_threshold = net.margin, net.distance_threshold
        self.eval()

    def preprocess(self, chips: torch.Tensor) -> torch.Tensor:
        """(N, 150, 150, 3) RGB -> (N, 3, 150, 150), dlib's ``(pixel - mean) / 256``."""
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise UserInputError(f"dlib's descriptor takes (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) RGB chips, "
                                 f"not {tuple(chips.shape)}")
        x = (chips.to(self.mean.dtype) - self.mean) / 256.0  # float32, or float64 after .double()
        return x.permute(0, 3, 1, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network on preprocessed (N, 3, 150, 150) input: the pooled (N, 256) vector before the fc."""
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        return x.mean(dim=(2, 3))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.features(self.preprocess(chips)) @ self.fc


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """The network of dlib's file (default: the pinned, sha256-checked ``imported_file("dlib-resnet")``),
    in eval mode."""
    if path is None:
        from iznet.imported import imported_file

        path = imported_file("dlib-resnet")
    return DlibResNet(read_dlib_resnet(path)).eval()


# --- ONNX -------------------------------------------------------------------------------------------------

ONNX_INPUT, ONNX_OUTPUT, ONNX_OPSET = "chips", "descriptor", 17


class _Graph(nn.Module):
    def __init__(self, net: DlibResNet):
        super().__init__()
        self.net = net

    def forward(self, chips: torch.Tensor) -> torch.Tensor:  # no shape check: it would freeze into the trace
        x = ((chips - self.net.mean) / 256.0).permute(0, 3, 1, 2)
        return self.net.features(x) @ self.net.fc


def export_onnx(net: DlibResNet, path: str | Path) -> Path:
    """Write ``net`` as ONNX: input ``chips`` float32 (batch, 150, 150, 3) RGB 0..255, output ``descriptor``
    (batch, 128); the batch axis is dynamic."""
    path = Path(path)
    example = torch.zeros(1, INPUT_SIZE, INPUT_SIZE, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Graph(net.eval()), (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}})
    return path


__all__ = ["DIM", "INPUT_SIZE", "SAME_PERSON_DISTANCE", "DlibFormatError", "DlibNetFile", "DlibResNet",
           "export_onnx", "load_dlib_resnet", "read_dlib_resnet"]
