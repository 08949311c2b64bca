"""NMS and VOC average precision on hand-made boxes whose answers were worked out by hand."""

import numpy as np
import pytest

from iznet.detection.boxes import iou_matrix, nms
from iznet.detection.evaluate import average_precision, load_imglab_xml, match_detections


def test_nms_keeps_the_best_of_each_cluster_and_separate_boxes():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # cluster A, best
            [1, 1, 11, 11],  # overlaps A (IoU 0.68) -> dropped
            [20, 20, 30, 30],  # alone
            [0, 0, 10, 10.5],  # overlaps A heavily but lower score -> dropped
            [5, 0, 15, 10],  # IoU with A = 1/3 -> kept at threshold 0.45
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.8, 0.5, 0.7, 0.6])
    keep = nms(boxes, scores, 0.45)
    assert keep.tolist() == [0, 4, 2]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]  # at 0.3 the 1/3 overlap goes too
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_iou_matrix_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [50 / 150, 1.0, 0.0], rtol=1e-6)


def test_ap_hand_checked():
    # Three faces in two images. Ranked detections: TP, FP, TP, FP(duplicate); one face never found.
    gts = [np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.array([[0, 0, 20, 20]], np.float32)]
    dets = [
        (np.array([[0, 0, 10, 10], [100, 100, 110, 110], [1, 0, 11, 10]], np.float32), np.array([0.9, 0.8, 0.6])),
        (np.array([[0, 0, 20, 21]], np.float32), np.array([0.7])),
    ]
    # recall/precision along the ranking: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2)
    # AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert average_precision(dets, gts, 0.5) == pytest.approx(5 / 9, abs=1e-6)


def test_ap_threshold_and_extremes():
    gts = [np.array([[0, 0, 10, 10]], np.float32)]
    loose = [(np.array([[3, 0, 13, 10]], np.float32), np.array([0.9]))]  # IoU 7/13 = 0.54... then 0.41 below
    assert average_precision(loose, gts, 0.5) == pytest.approx(1.0)
    shifted = [(np.array([[4.5, 0, 14.5, 10]], np.float32), np.array([0.9]))]  # IoU 55/145 = 0.379
    assert average_precision(shifted, gts, 0.5) == 0.0
    assert average_precision(shifted, gts, 0.3) == pytest.approx(1.0)
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], gts, 0.5) == 0.0


def test_each_ground_truth_matches_once_in_score_order():
    gt = np.array([[0, 0, 10, 10]], np.float32)
    tp = match_detections(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.2, 0.9]), gt, 0.5)
    assert tp.tolist() == [False, True]


def test_imglab_reader(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text(
        "<dataset><images><image file='a.jpg'><box top='10' left='20' width='30' height='40'/>"
        "<box top='0' left='0' width='5' height='5' ignore='1'/></image></images></dataset>"
    )
    data = load_imglab_xml(xml)
    assert data.images == [tmp_path / "a.jpg"]
    np.testing.assert_allclose(data.boxes[0], [[20, 10, 50, 50]])
