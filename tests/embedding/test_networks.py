"""Networks: every registered architecture ends in a unit-norm 128-d vector and gradients reach the input."""

import pytest
import torch

from iznet.embedding.networks import NETWORKS, L2Pool, Maxout, create_network
from iznet.errors import UserInputError

# tiny versions of the big nets (same structure, fewer channels, smaller inputs) keep this fast
TINY = {
    "small": dict(input_size=32, width=0.25),
    "hog": dict(input_size=32, cells=(8,), hidden=16),
    "hog_lbp": dict(input_size=32, cells=(8,), lbp_cells=(8,)),
    "nn1": dict(input_size=96, width=0.125, fc_width=256),
    "nn2": dict(input_size=64, width=0.125),
    "inception_v3": dict(input_size=75, width=0.125),
    "mobilefacenet": dict(input_size=48, width=0.25),
}


def test_registry_lists_the_four_networks():
    assert {"small", "hog", "hog_lbp", "nn1", "nn2", "inception_v3"} <= set(NETWORKS)
    assert NETWORKS["nn1"].input_size == 220
    assert NETWORKS["nn2"].input_size == 224
    assert NETWORKS["inception_v3"].input_size == 299


def test_unknown_network_is_a_user_error():
    with pytest.raises(UserInputError, match="unknown network"):
        create_network("resnet9000")


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_normalisation_and_gradients(name):
    torch.manual_seed(0)
    net = create_network(name, **TINY[name])
    s = TINY[name]["input_size"]
    x = torch.randn(3, 3, s, s, requires_grad=True)
    net.train()
    y = net(x)
    assert y.shape == (3, 128)
    assert torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)
    # a loss that depends on every output reaches the input and every trainable weight
    (y[0] - y[1]).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def test_published_sizes():
    # FaceNet Table 1 lists 140M parameters for NN1, Table 2 7.5M for NN2
    with torch.device("meta"):  # shapes only: no 560 MB of weights to initialise
        nn1 = create_network("nn1")
        assert 139e6 < sum(p.numel() for p in nn1.parameters()) < 141e6
        assert nn1.fc[0].linear.in_features == 7 * 7 * 256  # fc1 sees pool4's 7x7x256, as in Table 1
        assert nn1(torch.empty(2, 3, 220, 220)).shape == (2, 128)
        nn2 = create_network("nn2")
        assert 7.3e6 < sum(p.numel() for p in nn2.parameters()) < 7.6e6
        assert nn2(torch.empty(2, 3, 224, 224)).shape == (2, 128)
        v3 = create_network("inception_v3")
        assert v3(torch.empty(2, 3, 299, 299)).shape == (2, 128)
        # MobileFaceNet: "0.99M parameters" (Chen et al. 2018, Table 2); its GDConv sees the 7x7 map of 112x112
        mfn = create_network("mobilefacenet")
        assert 0.95e6 < sum(p.numel() for p in mfn.parameters()) < 1.05e6
        assert mfn.head[3].kernel_size == (7, 7)
        assert mfn(torch.empty(2, 3, 112, 112)).shape == (2, 128)


def test_maxout_is_max_over_affine_pieces():
    torch.manual_seed(0)
    m = Maxout(5, 3, pieces=2)
    x = torch.randn(4, 5)
    z = m.linear(x).view(4, 3, 2)
    assert torch.equal(m(x), torch.maximum(z[..., 0], z[..., 1]))
    # a maxout unit is convex in its input and can represent |x|: pieces w and -w
    with torch.no_grad():
        m.linear.weight.zero_()
        m.linear.bias.zero_()
        m.linear.weight[0, 0], m.linear.weight[1, 0] = 1.0, -1.0
    assert torch.allclose(m(x)[:, 0], x[:, 0].abs())


def test_l2_pool_is_root_mean_square():
    x = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]]])
    y = L2Pool(2, 2, 0)(x)
    assert torch.allclose(y, torch.tensor([[[[(25.0 / 4) ** 0.5]]]]), atol=1e-4)


def test_hog_layer_sees_edges_by_orientation():
    from iznet.embedding.networks import HOGLayer

    img = torch.zeros(1, 3, 16, 16)
    img[..., :, 8:] = 1.0                      # a vertical edge: horizontal gradient, orientation 0
    vert = HOGLayer(cell=8, bins=9)(img).view(9, 4, -1)
    img2 = img.transpose(2, 3).contiguous()   # a horizontal edge: orientation pi/2
    horiz = HOGLayer(cell=8, bins=9)(img2).view(9, 4, -1)
    assert vert.sum(dim=(1, 2)).argmax() in (0, 8)
    assert horiz.sum(dim=(1, 2)).argmax() in (4,)


def _hog_by_scatter(layer, x):
    """The HOG layer as first written (orientation votes scattered into the bins), the reference for the
    element-wise one: trained weights must keep giving the same vectors."""
    import math

    import torch.nn.functional as F

    g = x.mean(1, keepdim=True)
    gx = F.conv2d(F.pad(g, (1, 1, 0, 0), mode="replicate"), layer.kx)
    gy = F.conv2d(F.pad(g, (0, 0, 1, 1), mode="replicate"), layer.ky)
    mag = torch.sqrt(gx * gx + gy * gy + 1e-8)
    pos = torch.remainder(torch.atan2(gy, gx), math.pi) / (math.pi / layer.bins) - 0.5
    lo = torch.floor(pos)
    w_hi = pos - lo
    lo = torch.remainder(lo, layer.bins).long()
    hist = torch.zeros(g.shape[0], layer.bins, *g.shape[2:], dtype=x.dtype)
    hist.scatter_add_(1, lo, mag * (1 - w_hi))
    hist.scatter_add_(1, torch.remainder(lo + 1, layer.bins), mag * w_hi)
    blocks = F.normalize(F.unfold(F.avg_pool2d(hist, layer.cell), 2), dim=1, eps=1e-6).clamp(max=0.2)
    return F.normalize(blocks, dim=1, eps=1e-6).flatten(1)


@pytest.mark.parametrize("cell", [4, 8, 16])
def test_hog_layer_equals_the_scatter_formulation(cell):
    from iznet.embedding.networks import HOGLayer

    torch.manual_seed(cell)
    layer = HOGLayer(cell=cell)
    flat = torch.zeros(2, 3, 32, 32)
    flat[1, :, :, 16:] = 1.0  # flat regions (zero gradient) and one edge
    for x in (torch.rand(4, 3, 64, 64), torch.randn(2, 3, 48, 48) * 3, flat,
              torch.randint(0, 2, (2, 3, 32, 32)).float()):
        assert torch.allclose(layer(x), _hog_by_scatter(layer, x), atol=1e-5, rtol=0)


def test_lbp_layer_histograms_uniform_patterns_per_cell():
    from iznet.embedding.networks import LBPLayer, _uniform_lbp_table

    table = _uniform_lbp_table()
    assert int(table.max()) == 58 and len(set(table.tolist())) == 59     # 58 uniform patterns + "other"
    flat = torch.full((1, 3, 16, 16), 0.3)
    f = LBPLayer(cell=8)(flat).view(59, 4)                              # (bins, cells)
    # every neighbour >= centre on a flat patch: code 255, one uniform bin holds the whole cell
    assert torch.allclose(f.pow(2).sum(0), torch.ones(4))               # sqrt of a histogram summing to 1
    assert (f[int(table[255])] == 1).all()
    # a bright spot gives a different pattern at its centre, and brightness/contrast do not matter
    spot = flat.clone()
    spot[..., 4, 4] = 1.0
    g = LBPLayer(cell=8)(spot)
    assert not torch.allclose(g, LBPLayer(cell=8)(flat))
    assert torch.allclose(g, LBPLayer(cell=8)(spot * 2.0 + 0.5))


def test_hog_lbp_refuses_an_input_size_its_cells_do_not_tile():
    with pytest.raises(UserInputError, match="multiple"):
        create_network("hog_lbp", input_size=60)
