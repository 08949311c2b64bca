"""Target assignment across scales, target encoding, and the YOLO loss.

Assignment (YOLOv5-style, a multi-positive form of YOLOv3's): a ground-truth box is matched to every anchor
(at every scale) whose width and height are both within a factor ``anchor_t`` of the box's; at each such
scale the cell holding the box centre is positive, and with ``neighbors=True`` so are the two adjacent cells
nearest the centre (the bounded decoding ``2*sigmoid - 0.5`` reaches half a cell into them). A box too large or
too small for every anchor by that factor goes to its single best anchor (YOLOv3's rule), so no face is lost.

Loss = ``box_weight`` * (1 - CIoU) over positives
     + ``landmark_weight`` * smooth-L1 of the five landmarks over positives whose face has them (offsets from
       the cell centre in anchor units, what :func:`iznet.detection.yolo.decode_level` inverts), when the
       network has a landmark head
     + ``obj_weight`` * sum over scales of ``balance[s]`` * BCE(objectness), with the positives' target
       ``1 - iou_ratio + iou_ratio * IoU`` (detached), the negatives weighted by ``noobj_weight``, and negatives whose
       prediction already overlaps a face by more than ``ignore_iou`` left out (YOLOv3's ignore rule).
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from iznet.detection.darknet import STRIDES


@dataclass
class LevelTargets:
    """Positives at one scale: image, anchor, cell row/col, the box (cx, cy, w, h in pixels), and anchor wh."""

    b: torch.Tensor
    a: torch.Tensor
    gy: torch.Tensor
    gx: torch.Tensor
    box: torch.Tensor
    anchor: torch.Tensor
    #: (P, 10) the positives' landmarks in pixels (NaN: none known)
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return int(self.b.numel())


def build_targets(
    gt_boxes: list[torch.Tensor],
    anchors: torch.Tensor,
    grid_shapes: list[tuple[int, int]],
    strides=STRIDES,
    anchor_t: float = 4.0,
    neighbors: bool = True,
) -> list[LevelTargets]:
    """``gt_boxes[i]``: (N_i, 4) x1, y1, x2, y2 in input pixels, or (N_i, 14) with five landmarks (NaN: none).
    ``anchors``: (L, A, 2) pixels."""
    from training.detection.data import face_rows

    rows = [torch.cat([torch.full((len(g), 1), float(i)), torch.from_numpy(face_rows(np.asarray(g)))], 1)
            for i, g in enumerate(gt_boxes)]
    gt = torch.cat(rows, 0) if rows else torch.zeros(0, 15)
    cxcy = (gt[:, 1:3] + gt[:, 3:5]) / 2
    wh = (gt[:, 3:5] - gt[:, 1:3]).clamp(min=1e-3)
    L, A = anchors.shape[:2]
    flat = anchors.reshape(-1, 2)
    ratio = wh[:, None, :] / flat[None]  # (N, L*A, 2)
    worst = torch.max(ratio, 1 / ratio).max(-1).values  # (N, L*A)
    match = worst < anchor_t
    if len(gt):
        best = worst.argmin(1)
        match[torch.arange(len(gt)), best] = True  # every box has at least its best anchor
    out = []
    for lvl in range(L):
        h, w = grid_shapes[lvl]
        s = strides[lvl]
        n_idx, a_idx = match[:, lvl * A : (lvl + 1) * A].nonzero(as_tuple=True)
        c = cxcy[n_idx] / s
        cells = [c.floor()]
        owners = [n_idx]
        anchors_idx = [a_idx]
        if neighbors and len(n_idx):
            frac = c - c.floor()
            for dim in (0, 1):
                for side, cond in ((-1, frac[:, dim] < 0.5), (1, frac[:, dim] >= 0.5)):
                    shift = torch.zeros(2)
                    shift[dim] = side
                    cell = c.floor()[cond] + shift
                    ok = (cell[:, 0] >= 0) & (cell[:, 0] < w) & (cell[:, 1] >= 0) & (cell[:, 1] < h)
                    cells.append(cell[ok])
                    owners.append(n_idx[cond][ok])
                    anchors_idx.append(a_idx[cond][ok])
        cell = torch.cat(cells).long()
        n_all, a_all = torch.cat(owners), torch.cat(anchors_idx)
        gx, gy = cell[:, 0].clamp(0, w - 1), cell[:, 1].clamp(0, h - 1)
        box = torch.cat([cxcy[n_all], wh[n_all]], 1)
        out.append(LevelTargets(gt[n_all, 0].long(), a_all, gy, gx, box, anchors[lvl][a_all], gt[n_all, 5:]))
    return out


def encode(t: LevelTargets, stride: int) -> torch.Tensor:
    """The raw network outputs (logits, (P, 4)) that decode exactly to each positive's box."""
    sxy = ((t.box[:, :2] / stride - torch.stack([t.gx, t.gy], 1).float()) + 0.5) / 2
    swh = torch.sqrt(t.box[:, 2:] / t.anchor) / 2
    s = torch.cat([sxy, swh], 1).clamp(1e-6, 1 - 1e-6)
    return torch.log(s / (1 - s))


def decode_positives(raw: torch.Tensor, t: LevelTargets, stride: int) -> torch.Tensor:
    """Predicted (cx, cy, w, h) pixels at the positives of one level; ``raw`` is (B, A, H, W, C)."""
    p = raw[t.b, t.a, t.gy, t.gx]
    cell = torch.stack([t.gx, t.gy], 1).float()
    xy = (p[:, :2].sigmoid() * 2 - 0.5 + cell) * stride
    wh = (p[:, 2:4].sigmoid() * 2) ** 2 * t.anchor
    return torch.cat([xy, wh], 1)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor, ciou: bool = False, eps: float = 1e-7) -> torch.Tensor:
    """IoU (or Complete-IoU) of matching rows of two (N, 4) xyxy tensors."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    wa, ha = (a[:, 2] - a[:, 0]), (a[:, 3] - a[:, 1])
    wb, hb = (b[:, 2] - b[:, 0]), (b[:, 3] - b[:, 1])
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union
    if not ciou:
        return iou
    enc = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).pow(2).sum(1) + eps
    centre = ((a[:, :2] + a[:, 2:]) / 2 - (b[:, :2] + b[:, 2:]) / 2).pow(2).sum(1)
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + 1 + eps)
    return iou - centre / enc - alpha * v


def box_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-7)


class YoloLoss(torch.nn.Module):
    def __init__(
        self,
        anchors: torch.Tensor,
        strides=STRIDES,
        *,
        box_weight: float = 0.05,
        obj_weight: float = 1.0,
        noobj_weight: float = 1.0,
        ignore_iou: float = 0.6,
        balance=(4.0, 1.0, 0.4),
        anchor_t: float = 4.0,
        neighbors: bool = True,
        iou_ratio: float = 0.25,
        landmark_weight: float = 0.1,
    ):
        super().__init__()
        self.landmark_weight = landmark_weight
        self.iou_ratio = iou_ratio
        self.register_buffer("anchors", torch.as_tensor(anchors, dtype=torch.float32).view(len(strides), -1, 2))
        self.strides = tuple(strides)
        self.box_weight = box_weight
        self.obj_weight = obj_weight
        self.noobj_weight = noobj_weight
        self.ignore_iou = ignore_iou
        self.balance = balance
        self.anchor_t = anchor_t
        self.neighbors = neighbors

    def forward(self, raws: list[torch.Tensor], gt_boxes: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        shapes = [(r.shape[2], r.shape[3]) for r in raws]
        # Targets are matched on the CPU (small, index-heavy work) and moved to the predictions' device.
        targets = build_targets([torch.as_tensor(g).cpu() for g in gt_boxes], self.anchors.cpu(), shapes,
                                self.strides, self.anchor_t, self.neighbors)
        dev = raws[0].device
        if dev.type != "cpu":
            targets = [LevelTargets(*(getattr(t, f.name).to(dev) for f in dataclasses.fields(t))) for t in targets]
        box_loss = raws[0].new_zeros(())
        obj_loss = raws[0].new_zeros(())
        lm_loss = raws[0].new_zeros(())
        n_pos, n_lm = 0, 0
        for lvl, (raw, t) in enumerate(zip(raws, targets)):
            stride = self.strides[lvl]
            obj_target = torch.zeros(raw.shape[:4], device=raw.device)
            weight = torch.full(raw.shape[:4], self.noobj_weight, device=raw.device)
            if self.ignore_iou < 1.0:
                weight = self._ignore(raw, lvl, gt_boxes, weight)
            if len(t):
                pbox = decode_positives(raw, t, stride)
                ciou = box_iou_pairs(cxcywh_to_xyxy(pbox), cxcywh_to_xyxy(t.box), ciou=True)
                box_loss = box_loss + (1 - ciou).mean()
                # A positive's objectness target: 1, blended with the IoU of its box (so scores rank boxes by
                # quality; a pure-IoU target starts near 0 and learns slowly in a short run).
                obj_target[t.b, t.a, t.gy, t.gx] = (1 - self.iou_ratio) + self.iou_ratio * ciou.detach().clamp(0, 1)
                weight[t.b, t.a, t.gy, t.gx] = 1.0
                n_pos += len(t)
                if raw.shape[-1] > 5:
                    known = torch.isfinite(t.landmarks).all(1)
                    if known.any():
                        cell = (torch.stack([t.gx, t.gy], 1).float() + 0.5) * stride
                        target = (t.landmarks[known].view(-1, 5, 2) - cell[known, None]) / t.anchor[known, None]
                        pred = raw[t.b[known], t.a[known], t.gy[known], t.gx[known], 5:].view(-1, 5, 2)
                        lm_loss = lm_loss + F.smooth_l1_loss(pred, target, beta=0.1)
                        n_lm += int(known.sum())
            bce = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="none")
            obj_loss = obj_loss + self.balance[lvl] * (weight * bce).mean()
        bs = raws[0].shape[0]
        loss = (self.box_weight * box_loss + self.obj_weight * obj_loss + self.landmark_weight * lm_loss) * bs
        parts = {"box": float(box_loss.detach()), "obj": float(obj_loss.detach()), "pos": n_pos}
        if n_lm:
            parts.update(landmarks=float(lm_loss.detach()), lm_pos=n_lm)
        return loss, parts

    @torch.no_grad()
    def _ignore(self, raw: torch.Tensor, lvl: int, gt_boxes: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
        from iznet.detection.yolo import decode_level

        d = decode_level(raw.detach()[..., :5], self.anchors[lvl], self.strides[lvl])
        boxes = cxcywh_to_xyxy(d[..., :4])
        for i, g in enumerate(gt_boxes):
            if len(g) == 0:
                continue
            g = torch.as_tensor(g, dtype=torch.float32, device=boxes.device)
            best = box_iou_matrix(boxes[i].reshape(-1, 4), g.reshape(len(g), -1)[:, :4]).max(1).values
            weight[i][best.view(weight.shape[1:]) > self.ignore_iou] = 0.0
        return weight
