"""Losses and in-batch mining."""

import math

import torch
import torch.nn.functional as F

from training.losses import MarginSoftmax, PairClassifier, mine_negatives, squared_distances, triplet_loss


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_triplet_loss_matches_facenet_eq1():
    a, p, n = unit([1, 0]), unit([0.8, 0.6]), unit([0, 1])
    dap = ((a - p) ** 2).sum()
    dan = ((a - n) ** 2).sum()
    assert math.isclose(triplet_loss(a, p, n, 0.2).item(), max(0.0, (dap - dan + 0.2).item()), rel_tol=1e-6)
    # an easy triplet (negative far beyond the margin) costs nothing, a violating one costs
    assert triplet_loss(a, a, -a, 0.2).item() == 0.0
    assert triplet_loss(a, -a, a, 0.2).item() > 4.0


def test_triplet_gradient_pulls_positive_and_pushes_negative():
    a = unit([1, 0])
    p = unit([0, 1]).requires_grad_()
    n = unit([0.9, 0.1]).requires_grad_()
    triplet_loss(a, p, n, 0.2).backward()
    assert torch.dot(-p.grad[0], a[0] - p[0].detach()) > 0  # the positive moves towards the anchor
    assert torch.dot(-n.grad[0], a[0] - n[0].detach()) < 0  # the negative moves away from it
    a2 = unit([1, 0]).requires_grad_()
    triplet_loss(a2, p.detach(), n.detach(), 0.2).backward()
    assert torch.dot(-a2.grad[0], p[0].detach() - n[0].detach()) > 0  # the anchor moves from n towards p


def test_squared_distances():
    x = torch.randn(5, 4)
    d = squared_distances(x)
    ref = torch.cdist(x, x) ** 2
    assert torch.allclose(d, ref, atol=1e-4)


def test_semihard_mining_picks_the_band_and_hard_picks_the_closest():
    # anchor 0 and positive 1 at squared distance 0.5; negatives at 0.3 (hard), 0.6 (semi-hard), 1.9 (easy)
    emb = torch.tensor([[0.0, 0.0], [0.5**0.5, 0.0], [0.3**0.5, 0.0], [0.0, 0.6**0.5], [0.0, 1.9**0.5]])
    labels = torch.tensor([0, 0, 1, 2, 3])
    a, p = torch.tensor([0]), torch.tensor([1])
    neg, semi = mine_negatives(emb, labels, a, p, alpha=0.2, mode="semihard")
    assert neg.tolist() == [3] and semi.tolist() == [True]
    hard, _ = mine_negatives(emb, labels, a, p, alpha=0.2, mode="hard")
    assert hard.tolist() == [2]
    # no negative in the band: the closest negative farther than the positive (FaceNet's rule)
    neg, semi = mine_negatives(emb, labels, a, p, alpha=0.05, mode="semihard")
    assert neg.tolist() == [3] and semi.tolist() == [False]
    # never a same-identity "negative"
    labels2 = torch.tensor([0, 0, 0, 0, 1])
    neg, _ = mine_negatives(emb, labels2, a, p, alpha=0.2, mode="hard")
    assert neg.tolist() == [4]


def test_semihard_choice_is_random_among_candidates():
    emb = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.52], [0.0, -0.53], [0.0, 0.54]])
    labels = torch.tensor([0, 0, 1, 2, 3])
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        n, _ = mine_negatives(emb, labels, torch.tensor([0]), torch.tensor([1]), 0.2, generator=g)
        seen.add(int(n))
    assert seen == {2, 3, 4}


def test_pair_classifier_learns_same_vs_different():
    torch.manual_seed(0)
    clf = PairClassifier(8)
    x = F.normalize(torch.randn(64, 8), dim=1)
    same_partner = F.normalize(x + 0.05 * torch.randn(64, 8), dim=1)
    other = F.normalize(torch.randn(64, 8), dim=1)
    f1 = torch.cat([x, x])
    f2 = torch.cat([same_partner, other])
    y = torch.cat([torch.ones(64), torch.zeros(64)])
    opt = torch.optim.SGD(clf.parameters(), lr=0.5, momentum=0.9)
    for _ in range(100):
        opt.zero_grad()
        loss = clf.loss(f1, f2, y)
        loss.backward()
        opt.step()
    acc = ((clf(f1, f2) > 0).float() == y).float().mean()
    assert acc > 0.95
    assert PairClassifier(8, "chi2")(f1, f2).shape == (128,)


def test_margin_softmax_margins():
    emb = unit([1, 0], [0, 1])
    head = MarginSoftmax(2, 2, "cosface", scale=10, margin=0.3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    logits = head.logits(emb, torch.tensor([0, 1]))
    assert torch.allclose(logits, torch.tensor([[7.0, 0.0], [0.0, 7.0]]), atol=1e-4)
    arc = MarginSoftmax(2, 2, "arcface", scale=10, margin=0.5)
    with torch.no_grad():
        arc.weight.copy_(torch.eye(2))
    lg = arc.logits(emb, torch.tensor([0, 1]))
    assert math.isclose(lg[0, 0].item(), 10 * math.cos(0.5), rel_tol=1e-3)
    # the margin makes the loss larger than plain softmax on the same logits
    plain = F.cross_entropy(head.logits(emb), torch.tensor([0, 1]))
    assert head(emb, torch.tensor([0, 1])) > plain
