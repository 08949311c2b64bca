"""Target assignment across scales and the encode/decode round trip on hand-made boxes."""

import numpy as np
import torch

from iznet.detection.anchors import kmeans_anchors, mean_best_iou
from iznet.detection.yolo import decode, postprocess
from training.detection.targets import YoloLoss, build_targets, encode

ANCHORS = torch.tensor(
    [[[10, 12], [16, 19], [24, 28]], [[36, 42], [52, 60], [76, 88]], [[110, 130], [160, 190], [230, 260]]],
    dtype=torch.float32,
)
SHAPES = [(32, 32), (16, 16), (8, 8)]  # a 256 x 256 input
GT = [
    torch.tensor([[10, 10, 40, 46], [100, 50, 130, 90.0], [200, 200, 212, 214]]),
    torch.tensor([[20, 30, 220, 250.0]]),
]


def perfect_raws(targets):
    raws = [torch.full((2, 3, h, w, 5), -20.0) for h, w in SHAPES]
    for lvl, (t, s) in enumerate(zip(targets, (8, 16, 32))):
        raws[lvl][t.b, t.a, t.gy, t.gx, :4] = encode(t, s)
        raws[lvl][t.b, t.a, t.gy, t.gx, 4] = 10.0
    return raws


def test_small_boxes_go_to_fine_scales_and_large_to_coarse():
    targets = build_targets(GT, ANCHORS, SHAPES)
    small = [(t.b == 0) & (t.box[:, 2] < 20) for t in targets]  # the 12 x 14 face
    large = [(t.b == 1) for t in targets]
    assert small[0].any() and not small[2].any()
    assert large[2].any() and not large[0].any()
    # neighbours: the centre cell plus two adjacent cells per matched anchor
    t8 = targets[0]
    cells = {(int(y), int(x)) for y, x, m in zip(t8.gy, t8.gx, small[0]) if m}
    assert (int(207 // 8), int(206 // 8)) in cells and len(cells) == 3


def test_encode_decode_round_trip_recovers_the_boxes():
    targets = build_targets(GT, ANCHORS, SHAPES)
    pred = decode(perfect_raws(targets), ANCHORS).numpy()
    for i, g in enumerate(GT):
        kept = postprocess(pred[i], 0.5, 0.4, 100)
        got = kept[np.lexsort((kept[:, 1], kept[:, 0]))][:, :4]
        want = g.numpy()[np.lexsort((g.numpy()[:, 1], g.numpy()[:, 0]))]
        np.testing.assert_allclose(got, want, atol=1e-2)


def test_loss_is_low_for_perfect_predictions_and_high_for_wrong_ones():
    crit = YoloLoss(ANCHORS)
    targets = build_targets(GT, ANCHORS, SHAPES)
    good, parts = crit(perfect_raws(targets), GT)
    bad, _ = crit([torch.zeros(2, 3, h, w, 5) for h, w in SHAPES], GT)
    assert parts["box"] < 1e-3 and parts["pos"] > 0
    assert float(good) < 0.05 * float(bad)


def test_an_image_without_faces_only_has_objectness_loss():
    crit = YoloLoss(ANCHORS)
    loss, parts = crit([torch.zeros(1, 3, h, w, 5) for h, w in SHAPES], [torch.zeros(0, 4)])
    assert parts["pos"] == 0 and parts["box"] == 0.0 and float(loss) > 0


def test_kmeans_finds_the_size_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[10, 12], [40, 48], [160, 190]], np.float32)
    wh = np.concatenate([c * rng.uniform(0.93, 1.07, (200, 2)) for c in centres])
    anchors = kmeans_anchors(wh, k=3, seed=1)
    np.testing.assert_allclose(anchors, centres, rtol=0.08)
    assert mean_best_iou(wh, anchors) > 0.85
