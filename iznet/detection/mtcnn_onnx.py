"""MTCNN's three networks as onnxruntime graphs, written here from the torch nets' weights (milliseconds, in
memory: nothing is exported to disk or cached).

The graphs compute what :class:`~iznet.detection.mtcnn.PNet`, ``RNet`` and ``ONet`` compute (within float32
rounding, about 1e-6; tested), rewritten so that onnxruntime's blocked-channel (NCHWc) CPU kernels run every
layer without converting layouts in between; on one thread that is about twice as fast as the same nets in
torch or as torch's own ONNX export:

- **PReLU** ``max(0, y) + a min(0, y)`` is written ``a*y + (1-a)*Relu(y)``, the two per-channel scalings as
  ``BatchNormalization`` nodes (mean 0, variance 1, epsilon 0), which onnxruntime turns into depthwise 1x1
  convolutions and fuses with the sum. Its own ``PRelu`` kernel has no NCHWc form and broadcasts slowly.
- **ceil-mode max pooling** is floor-mode pooling with one cell of padding on the right and bottom (padding
  never wins a max): the same output for kernel 2 or 3 with stride 2 at every size, and the NCHWc pooling
  kernel takes it (it refuses ``ceil_mode``).
- **softmax over two classes** is ``sigmoid(l1 - l0)``: the face logit minus the background logit, one
  output row of the last layer (weights ``w1 - w0``).
- **heads** are merged: P-Net's two 1x1 convolutions into one (5 channels: face logit, 4 offsets), the dense
  heads of R- and O-Net into one matrix product (logit, 4 offsets[, 10 landmarks]).
- **Caffe's flatten order** (W, H, C) is folded into the first dense layer's weights, so the graph flattens
  plainly.

Inputs are NCHW float32 already scaled as the nets want (``(x - 127.5) / 128``, RGB); outputs: P-Net
``(N, 5, H', W')`` (face probability, 4 offsets), R-Net ``(N, 5)``, O-Net ``(N, 15)`` (probability, 4
offsets, 10 landmarks). The face probability is in row/channel 0 already passed through the sigmoid.
"""

from __future__ import annotations

import numpy as np
import torch

OPSET = 17


class _Graph:
    """A tiny ONNX graph builder: named initialisers and nodes, in order."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        n = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), n))
        return n

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        from onnx import helper

        out = self.name(stem or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, conv: torch.nn.Conv2d, weight: np.ndarray | None = None,
             bias: np.ndarray | None = None) -> str:
        w = conv.weight.detach().numpy() if weight is None else weight
        b = conv.bias.detach().numpy() if bias is None else bias
        k = list(w.shape[2:])
        return self.node("Conv", [x, self.const("w", w), self.const("b", b)], "conv", kernel_shape=k)

    def scale(self, x: str, s: np.ndarray) -> str:
        """Per-channel ``s * x`` as a BatchNormalization (NCHWc: a depthwise 1x1 convolution)."""
        c = len(s)
        return self.node("BatchNormalization", [x, self.const("s", s), self.const("zero", np.zeros(c)),
                                                self.const("zero", np.zeros(c)), self.const("one", np.ones(c))],
                         "bn", epsilon=0.0)

    def prelu(self, y: str, prelu: torch.nn.PReLU, channels: int | None = None) -> str:
        a = prelu.weight.detach().numpy().astype(np.float64)
        a = np.concatenate([a, np.zeros((channels or len(a)) - len(a))])
        return self.node("Add", [self.scale(y, a), self.scale(self.node("Relu", [y]), 1.0 - a)], "prelu")

    def prelu_dense(self, y: str, prelu: torch.nn.PReLU) -> str:
        """PReLU on (N, C) features (small; the plain operator)."""
        return self.node("PRelu", [y, self.const("slope", prelu.weight.detach().numpy())], "prelu")

    def pool(self, x: str, pool: torch.nn.MaxPool2d) -> str:
        k, s = pool.kernel_size, pool.stride
        k, s = (k, k) if isinstance(k, int) else k, (s, s) if isinstance(s, int) else s
        assert pool.ceil_mode and tuple(s) == (2, 2) and k[0] in (2, 3) and pool.padding in (0, (0, 0))
        return self.node("MaxPool", [x], "pool", kernel_shape=list(k), strides=list(s), pads=[0, 0, 1, 1])

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return self.node("Gemm", [x, self.const("w", weight), self.const("b", bias)], "dense", transB=1)

    def model(self, outputs: list[tuple[str, list]], input_shape: list) -> bytes:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, "mtcnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="iznet")
        model.ir_version = 8
        return model.SerializeToString()


def _logit_rows(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-class softmax weights -> the one row whose sigmoid is the face probability."""
    return w[1:2] - w[0:1], b[1:2] - b[0:1]


def _caffe_dense(dense: torch.nn.Linear, c: int, h: int, w: int) -> np.ndarray:
    """The dense weights that read a plain (C, H, W) flatten the way the originals read (W, H, C)."""
    weight = dense.weight.detach().numpy()
    return weight.reshape(-1, w, h, c).transpose(0, 3, 2, 1).reshape(weight.shape[0], -1)


def _w(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)


def _pad_out(w: np.ndarray, b: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's output channels padded with zero filters to ``channels``."""
    extra = channels - len(w)
    return (np.concatenate([w, np.zeros((extra, *w.shape[1:]), np.float32)]),
            np.concatenate([b, np.zeros(extra, np.float32)]))


def _pad_in(w: np.ndarray, channels: int) -> np.ndarray:
    """A convolution's input channels padded with zero weights to ``channels``."""
    return np.concatenate([w, np.zeros((w.shape[0], channels - w.shape[1], *w.shape[2:]), np.float32)], axis=1)


def _blocks(c: int) -> int:
    """``c`` rounded up to whole NCHWc blocks (8 channels on AVX2; a multiple of 16 suits AVX-512 too)."""
    return -(-c // 8) * 8


def _conv_prelu(g: _Graph, x: str, conv, prelu, in_channels: int | None = None) -> tuple[str, int]:
    """conv + PReLU with the output channels padded to whole blocks (onnxruntime leaves pooling and the next
    convolution in plain NCHW, with layout conversions around them, when a channel count is not a multiple
    of the block); the padding channels are zero and the next layer gives them zero weight."""
    w, b = _w(conv.weight), _w(conv.bias)
    if in_channels is not None and in_channels > w.shape[1]:
        w = _pad_in(w, in_channels)
    c = _blocks(len(w))
    w, b = _pad_out(w, b, c)
    return g.prelu(g.conv(x, conv, w, b), prelu, c), c


def pnet_onnx(net) -> bytes:
    g = _Graph()
    x, c = _conv_prelu(g, "x", net.conv1, net.prelu1)          # 10 channels -> 16
    x, c = _conv_prelu(g, g.pool(x, net.pool1), net.conv2, net.prelu2, c)
    x, c = _conv_prelu(g, x, net.conv3, net.prelu3, c)
    lw, lb = _logit_rows(_w(net.conv4_1.weight), _w(net.conv4_1.bias))
    head = g.conv(x, net.conv4_2, _pad_in(np.concatenate([lw, _w(net.conv4_2.weight)]), c),
                  np.concatenate([lb, _w(net.conv4_2.bias)]))
    prob = g.node("Sigmoid", [g.node("Slice", [head, _i64(g, [0]), _i64(g, [1]), _i64(g, [1])])])
    offsets = g.node("Slice", [head, _i64(g, [1]), _i64(g, [5]), _i64(g, [1])])
    out = g.node("Concat", [prob, offsets], "out", axis=1)
    return g.model([(out, ["n", 5, "h2", "w2"])], ["n", 3, "h", "w"])


def _i64(g: _Graph, values: list[int]) -> str:
    from onnx import numpy_helper

    n = g.name("idx")
    g.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), n))
    return n


def _dense_heads(g: _Graph, x: str, heads: list[torch.nn.Linear]) -> str:
    """The class head (as one logit row), then the others, in one matrix product; sigmoid on column 0."""
    lw, lb = _logit_rows(heads[0].weight.detach().numpy(), heads[0].bias.detach().numpy())
    w = np.concatenate([lw] + [h.weight.detach().numpy() for h in heads[1:]])
    b = np.concatenate([lb] + [h.bias.detach().numpy() for h in heads[1:]])
    y = g.dense(x, w, b)
    prob = g.node("Sigmoid", [g.node("Slice", [y, _i64(g, [0]), _i64(g, [1]), _i64(g, [1])])])
    rest = g.node("Slice", [y, _i64(g, [1]), _i64(g, [len(w)]), _i64(g, [1])])
    return g.node("Concat", [prob, rest], "out", axis=1)


def rnet_onnx(net) -> bytes:
    g = _Graph()
    x, c = _conv_prelu(g, "x", net.conv1, net.prelu1)          # 28 channels -> 32
    x, c = _conv_prelu(g, g.pool(x, net.pool1), net.conv2, net.prelu2, c)
    x, c = _conv_prelu(g, g.pool(x, net.pool2), net.conv3, net.prelu3, c)   # (N, 64, 3, 3)
    x = g.node("Flatten", [x], axis=1)
    x = g.prelu_dense(g.dense(x, _caffe_dense(net.dense4, 64, 3, 3), _w(net.dense4.bias)), net.prelu4)
    return g.model([(_dense_heads(g, x, [net.dense5_1, net.dense5_2]), ["n", 5])], ["n", 3, 24, 24])


def onet_onnx(net) -> bytes:
    g = _Graph()
    x, c = _conv_prelu(g, "x", net.conv1, net.prelu1)
    x, c = _conv_prelu(g, g.pool(x, net.pool1), net.conv2, net.prelu2, c)
    x, c = _conv_prelu(g, g.pool(x, net.pool2), net.conv3, net.prelu3, c)
    x, c = _conv_prelu(g, g.pool(x, net.pool3), net.conv4, net.prelu4, c)   # (N, 128, 3, 3)
    x = g.node("Flatten", [x], axis=1)
    x = g.prelu_dense(g.dense(x, _caffe_dense(net.dense5, 128, 3, 3), _w(net.dense5.bias)), net.prelu5)
    out = _dense_heads(g, x, [net.dense6_1, net.dense6_2, net.dense6_3])
    return g.model([(out, ["n", 15])], ["n", 3, 48, 48])


def session(model: bytes, threads: int | None = None):
    """An onnxruntime CPU session for one of the graphs (``threads`` intra-op threads; default 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads or 1))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


#: Pixels (rows x width of the input) per P-Net strip: a strip's layer outputs then fit in the cache.
STRIP_PIXELS = 8192


def strip_cells(width: int) -> int:
    """Output rows per P-Net strip for an input ``width`` px wide (8 to 32)."""
    return max(8, min(32, STRIP_PIXELS // max(1, width)))


def strip_starts(height: int, width: int) -> list[int]:
    """First input rows of the P-Net strips: every ``2n`` rows (even, so the stride-2 pooling keeps its
    grid); strip k reads rows ``2nk .. 2nk + 2n + 10`` (its n output rows' 12-row windows), the last one
    reads to the bottom (the ceil-mode pooling's partial window there, as in the whole image). So the strips'
    outputs, stacked, are the whole image's, cell for cell."""
    n = strip_cells(width)
    if height < 2 * (2 * n + 10):
        return [0]
    return list(range(0, height - 10, 2 * n))


class OnnxNets:
    """The three sessions, called like the torch nets but on NCHW numpy arrays, returning numpy arrays."""

    def __init__(self, pnet, rnet, onet, threads: int | None = None):
        self.p = session(pnet_onnx(pnet), threads)
        self.r = session(rnet_onnx(rnet), threads)
        self.o = session(onet_onnx(onet), threads)
        self._names = {s: (s.get_inputs()[0].name, s.get_outputs()[0].name) for s in (self.p, self.r, self.o)}

    def _run(self, sess, x: np.ndarray) -> np.ndarray:
        i, o = self._names[sess]
        return sess.run([o], {i: np.ascontiguousarray(x, np.float32)})[0]

    def pnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, H, W) -> probability (N, H', W'), offsets (N, 4, H', W').

        A tall image goes through in horizontal strips (:func:`strip_starts`): every layer's output then
        stays in the cache (1.5-1.7x faster on a 384x288 pyramid level), and the cells are the same ones."""
        x = np.ascontiguousarray(x, np.float32)
        starts = strip_starts(x.shape[2], x.shape[3])
        n = strip_cells(x.shape[3])
        parts = [self._run(self.p, x[:, :, a:a + 2 * n + 10] if k + 1 < len(starts) else x[:, :, a:])
                 for k, a in enumerate(starts)]
        y = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
        return y[:, 0], y[:, 1:]

    def rnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = self._run(self.r, x)
        return y[:, 0], y[:, 1:5]

    def onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = self._run(self.o, x)
        return y[:, 0], y[:, 1:5], y[:, 5:15]
