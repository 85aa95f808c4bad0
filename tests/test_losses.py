import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emolib.losses import (
    MAX_LOGIT_SCALE,
    clamp_logit_scale_,
    classification_loss,
    clip_loss,
    compute_loss,
    contrastive_loss,
    gather_with_grad,
    infonce_floor,
)


def brute_force(text: np.ndarray, image: np.ndarray, scale: float) -> float:
    """InfoNCE written out with loops, in float64."""
    n = len(text)
    sims = scale * text @ image.T
    row = [-(sims[i, i] - math.log(sum(math.exp(sims[i, j]) for j in range(n)))) for i in range(n)]
    col = [-(sims[j, j] - math.log(sum(math.exp(sims[i, j]) for i in range(n)))) for j in range(n)]
    return (sum(row) / n + sum(col) / n) / 2


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("n, d, scale", [(2, 4, 1.0), (7, 16, 14.3), (32, 8, 100.0)])
def test_matches_brute_force_float64(n, d, scale):
    t, v = unit(n, d, 0), unit(n, d, 1)
    got = clip_loss(t, v, torch.tensor(scale, dtype=torch.float64))
    assert got.item() == pytest.approx(brute_force(t.numpy(), v.numpy(), scale), rel=1e-10)


def test_perfect_alignment_beats_random():
    t = unit(16, 32, 0)
    scale = torch.tensor(50.0, dtype=torch.float64)
    assert clip_loss(t, t, scale) < 0.1 < clip_loss(t, unit(16, 32, 9), scale)


def test_gradcheck():
    t = unit(5, 6, 2).requires_grad_()
    v = unit(5, 6, 3).requires_grad_()
    s = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (t, v, s))


def test_clamped_scale_keeps_its_gradient_and_can_come_back_down():
    """open_clip's clamp: the parameter is clamped after the step, never s in the forward."""
    log_s = torch.nn.Parameter(torch.tensor(math.log(MAX_LOGIT_SCALE)))
    opt = torch.optim.SGD([log_s], lr=0.5)
    t, v = unit(8, 4, 0), unit(8, 4, 1)  # unrelated pairs: a lower scale lowers the loss
    for _ in range(3):
        opt.zero_grad()
        clip_loss(t, v, log_s.exp()).backward()
        assert log_s.grad.item() > 0  # at the cap the gradient still says "come down"
        opt.step()
        clamp_logit_scale_(log_s)
    assert log_s.item() < math.log(MAX_LOGIT_SCALE) - 0.1
    with torch.no_grad():
        log_s.fill_(10.0)
    clamp_logit_scale_(log_s)
    assert log_s.item() == pytest.approx(math.log(MAX_LOGIT_SCALE))
    with torch.no_grad():
        log_s.fill_(-3.0)
    clamp_logit_scale_(log_s)
    assert log_s.item() == 0.0


def test_logits_are_float32_under_autocast():
    """bf16 similarities at s = 100 would move logits by ~0.1: the loss turns autocast off."""
    t, v = unit(64, 32, 0).float(), unit(64, 32, 1).float()
    scale = torch.tensor(100.0)
    exact = clip_loss(t.double(), v.double(), scale.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = clip_loss(t, v, scale)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(exact.item(), rel=1e-5)


def test_generalized_ce_is_its_formula_and_tends_to_ce():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, -100, 2, 3, -100, 1])
    seen = labels >= 0
    p_y = logits[seen].softmax(-1).gather(1, labels[seen, None]).squeeze(1)
    for q in (0.3, 0.7, 1.0):
        want = ((1 - p_y ** q) / q).mean()
        got = classification_loss(logits, labels, q=q)
        assert got.item() == pytest.approx(want.item(), rel=1e-12)
        halves = sum(classification_loss(logits[i:i + 3], labels[i:i + 3], count=4, q=q)
                     for i in (0, 3))
        assert halves.item() == pytest.approx(want.item(), rel=1e-12)
    ce = F.cross_entropy(logits[seen], labels[seen])
    assert classification_loss(logits, labels, q=1e-7).item() == pytest.approx(
        ce.item(), rel=1e-5)
    assert classification_loss(logits[:1], torch.tensor([-100]), q=0.7).item() == 0.0


def test_generalized_ce_weighs_each_post_by_how_likely_the_model_finds_its_label():
    """d GCE / d logits = p_y^q * d CE / d logits: a label the model finds unlikely (often
    a wrong one) pulls with weight p_y^q < 1, where cross-entropy pulls with weight 1."""
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])  # the second post's label is one the model doubts
    q = 0.7
    grads = []
    for qq in (0.0, q):
        z = logits.clone().requires_grad_()
        classification_loss(z, labels, count=1, q=qq).backward()
        grads.append(z.grad)
    p_y = logits.softmax(-1).gather(1, labels[:, None])
    torch.testing.assert_close(grads[1], p_y ** q * grads[0])
    assert (p_y ** q)[1].item() < 0.1 < 0.9 < (p_y ** q)[0].item()


def test_train_config_refuses_a_q_outside_0_1():
    from emolib.config import TrainConfig

    for q in (-0.1, 1.5):
        with pytest.raises(ValueError, match="gce_q"):
            TrainConfig(gce_q=q).check()
    TrainConfig(gce_q=0.7).check()


def test_classification_loss_ignores_hidden_labels_and_sums_across_micro_batches():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, -100, 2, 3, -100, 1])
    want = F.cross_entropy(logits[labels >= 0], labels[labels >= 0])
    assert classification_loss(logits, labels).item() == pytest.approx(want.item())
    halves = sum(classification_loss(logits[i:i + 3], labels[i:i + 3], count=4)
                 for i in (0, 3))
    assert halves.item() == pytest.approx(want.item())
    nothing = classification_loss(logits[:1], torch.tensor([-100]))
    assert nothing.item() == 0.0  # no labelled post: no NaN


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"must both be \(N, D\)"):
        clip_loss(torch.zeros(3, 4), torch.zeros(4, 4), torch.tensor(1.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, t_all, v_all, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = len(t_all) // world
    t = t_all[rank * n:(rank + 1) * n].clone().requires_grad_()
    v = v_all[rank * n:(rank + 1) * n].clone().requires_grad_()
    log_s = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), dtype=torch.float64))
    loss = contrastive_loss(t, v, log_s.exp())
    loss.backward()
    # As DDP would: average the parameter gradient over ranks; local feature gradients
    # are already complete (all_gather's backward sums them across ranks) and so are
    # `world` times the gradient of the one global loss.
    grad_scale = log_s.grad.clone()
    dist.all_reduce(grad_scale)
    out[rank] = {"loss": loss.item(), "t_grad": t.grad / world, "v_grad": v.grad / world,
                 "scale_grad": grad_scale / world}
    dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process_on_the_full_batch():
    import torch.multiprocessing as mp

    world, n, d = 2, 8, 6
    t_all, v_all = unit(n, d, 4), unit(n, d, 5)
    ref_t, ref_v = t_all.clone().requires_grad_(), v_all.clone().requires_grad_()
    ref = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), dtype=torch.float64))
    ref_loss = contrastive_loss(ref_t, ref_v, ref.exp())
    ref_loss.backward()
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_worker, args=(world, _free_port(), t_all, v_all, out), nprocs=world,
                       start_method="spawn", join=True)
    for rank in range(world):
        r = out[rank]
        assert r["loss"] == pytest.approx(ref_loss.item(), abs=1e-5)
        sl = slice(rank * n // world, (rank + 1) * n // world)
        assert torch.allclose(r["t_grad"], ref_t.grad[sl], atol=1e-5)
        assert torch.allclose(r["v_grad"], ref_v.grad[sl], atol=1e-5)
        assert torch.allclose(r["scale_grad"], ref.grad, atol=1e-5)


# ---------------------------------------------------------------- compute_loss, the floor
class Out:
    """A model output: logits, unit embeddings and the scale (or none, one branch)."""

    def __init__(self, n=6, k=4, d=8, scale=10.0, two_branch=True, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.logits = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
        self.text_embed = unit(n, d, seed + 1).requires_grad_() if two_branch else None
        self.image_embed = unit(n, d, seed + 2).requires_grad_() if two_branch else None
        self.logit_scale = torch.tensor(scale, dtype=torch.float64, requires_grad=True) \
            if two_branch else None


LABELS = torch.tensor([0, 1, 2, 3, -100, 1])


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_compute_loss_is_ce_plus_lambda_infonce(weight):
    out = Out()
    loss, parts = compute_loss(out, LABELS, weight)
    ce = F.cross_entropy(out.logits, LABELS, ignore_index=-100)
    nce = clip_loss(out.text_embed, out.image_embed, out.logit_scale)
    assert set(parts) == {"ce", "contrastive"}
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-12)
    assert parts["contrastive"].item() == pytest.approx(nce.item(), rel=1e-12)
    assert loss.item() == pytest.approx(ce.item() + weight * nce.item(), rel=1e-12)
    assert not parts["ce"].requires_grad and not parts["contrastive"].requires_grad
    loss.backward()
    # lambda = 0: InfoNCE is reported but trains nothing; lambda > 0: it reaches the scale
    assert (out.logit_scale.grad is not None) == bool(weight)
    if weight:
        assert out.logit_scale.grad.abs() > 0 and out.text_embed.grad.abs().sum() > 0
    else:
        assert out.text_embed.grad is None


def test_compute_loss_of_a_one_branch_model_is_the_ce():
    out = Out(two_branch=False)
    loss, parts = compute_loss(out, LABELS, 0.5)
    assert set(parts) == {"ce"}
    assert loss.item() == pytest.approx(
        F.cross_entropy(out.logits, LABELS, ignore_index=-100).item(), rel=1e-12)


def test_compute_loss_with_q_makes_its_ce_term_the_generalized_one():
    out = Out()
    loss, parts = compute_loss(out, LABELS, 0.5, q=0.7)
    gce = classification_loss(out.logits, LABELS, q=0.7)
    nce = clip_loss(out.text_embed, out.image_embed, out.logit_scale)
    assert parts["ce"].item() == pytest.approx(gce.item(), rel=1e-12)
    assert loss.item() == pytest.approx(gce.item() + 0.5 * nce.item(), rel=1e-12)
    ce = F.cross_entropy(out.logits, LABELS, ignore_index=-100)
    assert abs(parts["ce"].item() - ce.item()) > 0.1  # not the plain CE


def test_compute_loss_gradient_to_the_embeddings_scales_with_lambda():
    grads = []
    for weight in (1.0, 3.0):
        out = Out()
        compute_loss(out, LABELS, weight)[0].backward()
        grads.append(out.text_embed.grad)
    torch.testing.assert_close(grads[1], 3 * grads[0])


def test_classification_loss_counts_and_precision():
    logits = torch.randn(4, 3, dtype=torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 1])
    got = classification_loss(logits, labels)
    assert got.dtype == torch.float32  # 16-bit logits are widened before the CE
    want = F.cross_entropy(logits.float(), labels, reduction="sum") / 4
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert classification_loss(logits.float(), labels, count=8).item() == \
        pytest.approx(want.item() / 2, rel=1e-6)
    assert classification_loss(logits.float(), labels, count=torch.tensor(0)).item() == \
        pytest.approx(want.item() * 4, rel=1e-6)  # a count of 0 divides by 1


def test_contrastive_loss_in_one_process_is_clip_loss():
    t, v = unit(5, 4, 7), unit(5, 4, 8)
    s = torch.tensor(3.0, dtype=torch.float64)
    assert contrastive_loss(t, v, s).item() == clip_loss(t, v, s).item()
    assert gather_with_grad(t) is t


def test_gather_with_grad_concatenates_the_ranks_in_order(monkeypatch):
    """Under a world of 2 (collectives stubbed): this rank's rows, then the other's, and the
    gradient flows back to this rank's rows."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn

    other = torch.full((2, 3), 5.0)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dnn, "all_gather", lambda x: (x, other))
    x = torch.ones(2, 3, requires_grad=True)
    got = gather_with_grad(x)
    assert torch.equal(got, torch.cat([torch.ones(2, 3), other]))
    (got * torch.arange(4.0).view(4, 1)).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0] * 3, [1.0] * 3]))
    monkeypatch.setattr(dist, "get_world_size", lambda: 1)
    assert gather_with_grad(x) is x


@pytest.mark.parametrize("batch, compatible", [(2, 0.5), (3, 0.25), (8, 0.5), (16, 0.1),
                                               (64, 0.5), (5, 0.9)])
def test_infonce_floor_is_the_binomial_expectation(batch, compatible):
    from scipy.stats import binom

    n = batch - 1
    want = sum(binom.pmf(b, n, compatible) * math.log1p(b) for b in range(n + 1))
    assert infonce_floor(batch, compatible) == pytest.approx(want, rel=1e-10)


def test_infonce_floor_by_hand_and_its_limits():
    assert infonce_floor(3, 0.25) == pytest.approx(0.375 * math.log(2) + 0.0625 * math.log(3))
    assert infonce_floor(64, 1.0) == pytest.approx(math.log(64))
    assert infonce_floor(64, 0.0) == 0.0
    assert infonce_floor(1, 0.3) == 0.0  # no negatives
    for batch, compatible, message in [(0, 0.5, "batch_size must be at least 1; got 0"),
                                       (4, -0.1, r"compatible must be in \[0, 1\]; got -0.1"),
                                       (4, 1.5, r"compatible must be in \[0, 1\]; got 1.5")]:
        with pytest.raises(ValueError, match=message):
            infonce_floor(batch, compatible)


def test_16_bit_embeddings_are_widened_before_the_similarities():
    """Embeddings made under autocast arrive in bf16: the loss is that of their float32
    values, in float32 (a bf16 matmul at s = 100 would move the logits by ~0.1)."""
    t, v = unit(32, 16, 3).bfloat16(), unit(32, 16, 4).bfloat16()
    scale = torch.tensor(100.0)
    got = clip_loss(t, v, scale)
    assert got.dtype == torch.float32
    want = clip_loss(t.double(), v.double(), scale.double())
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
