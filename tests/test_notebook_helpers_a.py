"""Helpers that chapters 00-04 use: patchify, nearest neighbours, the InfoNCE floor, figures."""

import math

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emolib import plots
from emolib.encoders import patchify
from emolib.losses import clip_loss, infonce_floor
from emolib.retrieval import nearest_neighbours, neighbour_agreement

matplotlib.use("Agg")


def test_patchify_equals_the_patch_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 24)
    conv = torch.nn.Conv2d(3, 5, 8, stride=8)
    tokens = patchify(x, 8)
    assert tokens.shape == (2, 2 * 3, 3 * 8 * 8)
    want = conv(x).flatten(2).transpose(1, 2)  # (B, N, D), patches row by row
    got = tokens @ conv.weight.flatten(1).T + conv.bias
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(tokens[0, 1].view(3, 8, 8), x[0, :, :8, 8:16])  # second patch: row 0
    with pytest.raises(ValueError, match="multiple of the patch"):
        patchify(x, 5)


def test_nearest_neighbours_and_agreement():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nearest_neighbours(emb, 1).squeeze(1).tolist() == [1, 0, 3, 2]
    assert neighbour_agreement(emb, [0, 0, 1, 1]) == 1.0
    assert neighbour_agreement(emb, [0, 1, 0, 1]) == 0.0
    assert neighbour_agreement(emb, np.array([0, 0, 1, 1]), k=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(emb, 4)
    with pytest.raises(ValueError, match="groups"):
        neighbour_agreement(emb, [0, 1])


def test_infonce_floor_limits_and_simulation():
    assert infonce_floor(64, 1.0) == pytest.approx(math.log(64))
    assert infonce_floor(64, 0.0) == 0.0
    assert infonce_floor(1, 0.3) == 0.0
    assert 0 < infonce_floor(64, 0.25) < infonce_floor(64, 0.5) < math.log(64)
    # the floor is what the Bayes critic scores: logits 0 for compatible, -inf otherwise
    rng = np.random.default_rng(0)
    n, losses = 32, []
    for _ in range(400):
        group = rng.integers(0, 4, n)  # 4 text groups; image compatible with 2 of 4 groups
        image_group = (group + rng.integers(0, 2, n)) % 4
        ok = (image_group[None, :] == group[:, None]) | (image_group[None, :]
                                                         == (group[:, None] + 1) % 4)
        logits = torch.where(torch.as_tensor(ok), 0.0, -1e4)
        losses.append(F.cross_entropy(logits, torch.arange(n)).item())
    assert np.mean(losses) == pytest.approx(infonce_floor(n, 0.5), abs=0.03)
    with pytest.raises(ValueError):
        infonce_floor(8, 1.5)


def test_clip_loss_of_concatenated_halves_is_the_full_batch_loss():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(8, 4), dim=-1)
    v = F.normalize(torch.randn(8, 4), dim=-1)
    scale = torch.tensor(10.0)
    full = clip_loss(t, v, scale)
    gathered = clip_loss(torch.cat([t[:4], t[4:]]), torch.cat([v[:4], v[4:]]), scale)
    local = (clip_loss(t[:4], v[:4], scale) + clip_loss(t[4:], v[4:], scale)) / 2
    assert torch.allclose(full, gathered) and not torch.allclose(full, local)


def test_figures_render():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    figs = [plots.architecture_diagram("smoke"), plots.patch_grid(image, 8),
            plots.image_grid([image] * 5, ["a"] * 5, cols=3),
            plots.similarity_panels({"a": np.eye(3), "b": -np.eye(3)}, list("xyz"), list("uvw"),
                                    annotate=True, vmin=None, vmax=None)]
    for fig in figs:
        fig.canvas.draw()
        matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="multiple of patch"):
        plots.patch_grid(image, 5)
