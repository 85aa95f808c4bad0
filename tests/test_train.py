"""The training loop: selection on validation, early stopping, exact resume, schedule,
micro-batches, precision and hidden labels."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import emolib.train as T
from emolib.config import TrainConfig, get_profile
from emolib.hardware import autocast, grad_scaler
from emolib.losses import IGNORE, clip_loss
from emolib.model import EmoticonModel
from emolib.run import experiment, train
from emolib.train import (
    evaluate,
    fit,
    hide_labels,
    load_checkpoint,
    micro_batched_backward,
    warmup_cosine,
)

TIMING = ["epoch_seconds", "samples_per_second"]


def run(data, out, **kw):
    kw.setdefault("epochs", 3)
    return train("smoke", data, out, progress=False, batch_size=16, **kw)


class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, epochs: int):
    """Make the run die right after the checkpoint of epoch ``epochs`` is written."""
    save = T.save_checkpoint

    def dying_save(state, path):
        save(state, path)
        if state["epoch"] == epochs:
            raise Interrupted

    monkeypatch.setattr(T, "save_checkpoint", dying_save)


def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_synth, tmp_path, monkeypatch):
    full = run(tiny_synth, tmp_path / "full", patience=10)
    with monkeypatch.context() as m:
        interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            run(tiny_synth, tmp_path / "part", patience=10)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == 1
    resumed = run(tiny_synth, tmp_path / "part", patience=10)
    assert len(resumed.history) == 3
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    pd.testing.assert_frame_equal(full.history.drop(columns=TIMING),
                                  resumed.history.drop(columns=TIMING))
    assert full.test_metrics == resumed.test_metrics


def test_a_crash_inside_torch_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    T.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def half_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        T.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["epoch"] == 1


@pytest.fixture(scope="module")
def uneven_synth(tmp_path_factory):
    """Validation and test of different sizes (so mixing them up cannot go unnoticed)."""
    from emolib.prepare.emosynth import generate
    from emolib.synth import SynthConfig

    out = tmp_path_factory.mktemp("uneven") / "emosynth"
    generate(out, SynthConfig(size=150, image_size=32, seed=4, splits=(0.6, 0.15, 0.25)),
             progress=False)
    return out


def test_selection_uses_validation_and_reports_test_of_the_best(uneven_synth, tmp_path,
                                                               monkeypatch):
    """Scripted validation MCC 0.5, 0.6, 0.4, 0.3 with patience 2: stop after epoch 4,
    best/ = epoch 2's weights; test metrics are the best model's on the test split."""
    script = iter([0.5, 0.6, 0.4, 0.3, 0.9, 0.9])
    weights, splits = {}, []
    real = T.evaluate

    def scripted(model, cache, split, *a):
        splits.append(split)
        out = real(model, cache, split, *a)
        if split == "val":
            out["mcc"] = next(script)
            weights[len(weights) + 1] = {k: v.clone() for k, v in model.state_dict().items()}
        return out

    monkeypatch.setattr(T, "evaluate", scripted)
    res = run(uneven_synth, tmp_path / "r", epochs=6, patience=2)
    assert res.history["val_mcc"].tolist() == [0.5, 0.6, 0.4, 0.3]
    assert res.fit.best_epoch == 2 and res.fit.stopped_early
    assert set(splits) == {"val"}  # fit never looks at train or test
    best = EmoticonModel.load(tmp_path / "r" / "best")
    for key, value in best.state_dict().items():
        assert torch.equal(value, weights[2][key]), key
    cache = res.experiment.cache
    assert res.test_metrics == real(best, cache, "test")
    assert res.test_metrics["n"] == len(cache.indices("test")) != len(cache.indices("val"))


def test_early_stopping_counter_survives_an_interruption(uneven_synth, tmp_path, monkeypatch):
    def with_script(path, interrupt=None):
        script = iter([0.5, 0.6, 0.4, 0.3, 0.9, 0.9])
        real = T.evaluate

        def scripted(model, cache, split, *a):
            out = real(model, cache, split, *a)
            out["mcc"] = next(script) if split == "val" else out["mcc"]
            return out

        with monkeypatch.context() as m:
            m.setattr(T, "evaluate", scripted)
            if interrupt:
                interrupt_after(m, interrupt)
                with pytest.raises(Interrupted):
                    run(uneven_synth, path, epochs=6, patience=2)
                return None
            return run(uneven_synth, path, epochs=6, patience=2)

    with_script(tmp_path / "r", interrupt=3)  # inside the plateau: one bad epoch so far
    state = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert (state["best_epoch"], state["bad_epochs"]) == (2, 1)

    # the resumed run replays the remaining script: 0.3 (epoch 4) -> stop
    script_rest = iter([0.3, 0.9])
    real = T.evaluate

    def rest(model, cache, split, *a):
        out = real(model, cache, split, *a)
        out["mcc"] = next(script_rest) if split == "val" else out["mcc"]
        return out

    monkeypatch.setattr(T, "evaluate", rest)
    res = run(uneven_synth, tmp_path / "r", epochs=6, patience=2)
    assert len(res.history) == 4 and res.fit.best_epoch == 2 and res.fit.stopped_early


def test_history_and_outputs_of_a_run(uneven_synth, tmp_path):
    res = run(uneven_synth, tmp_path / "r", epochs=2)
    out = tmp_path / "r"
    for name in ("checkpoint.pt", "metrics.csv", "metrics.json", "test_metrics.json",
                 "run.json", "best/model.safetensors", "best/config.json", "tokenizer"):
        assert (out / name).exists(), name
    assert not list(out.rglob("*.tmp"))
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    last = EmoticonModel(res.experiment.model)
    last.load_state_dict(load_checkpoint(out / "checkpoint.pt")["model"])
    val = evaluate(last, res.experiment.cache, "val")
    assert {k: rows[-1][f"val_{k}"] for k in ("accuracy", "mcc", "macro_f1")} == \
        {k: val[k] for k in ("accuracy", "mcc", "macro_f1")}
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["precision"] == "fp32" and run_json["micro_batch"] == 16


def test_training_reduces_the_loss(tiny_synth, tmp_path):
    res = run(tiny_synth, tmp_path / "learn", epochs=4, lr=3e-3, patience=10)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 500), ratio=st.floats(0.0, 0.5))
def test_schedule_properties(total, ratio):
    f = warmup_cosine(total, ratio)
    warmup = max(1, int(ratio * total))
    factors = [f(s) for s in range(total + 1)]
    assert all(0.0 <= x <= 1.0 + 1e-12 for x in factors)
    assert f(min(warmup, total) - 1) == pytest.approx(1.0)  # peak at the end of warmup
    assert all(a < b for a, b in zip(factors[:warmup - 1], factors[1:warmup], strict=True))
    after = factors[warmup - 1:]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:], strict=False))
    if total > warmup:
        assert f(total) == pytest.approx(0.0, abs=1e-12)


def test_schedule_examples():
    f = warmup_cosine(100, 0.1)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_unknown_training_option_is_refused(tiny_synth, tmp_path):
    with pytest.raises(TypeError, match="unknown training option"):
        train("smoke", tiny_synth, tmp_path / "x", progress=False, epochz=1)


def test_profiles(monkeypatch):
    for name in ("smoke", "cpu", "gpu"):
        assert get_profile(name).name == name
    assert get_profile("gpu").model.image_size == 224
    assert get_profile("gpu").model.max_length == 64
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile("auto").name == "cpu"
    monkeypatch.setenv("EMOLIB_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("tpu")


# ---------------------------------------------------------------- micro-batches and precision
def tiny_model(dropout: float = 0.1) -> EmoticonModel:
    cfg = get_profile("smoke").model
    cfg.dropout = dropout
    for enc in (cfg.text, cfg.image):
        enc.arch = {**enc.arch, "hidden_dropout_prob": dropout,
                    "attention_probs_dropout_prob": dropout}
    torch.manual_seed(0)
    return EmoticonModel(cfg).double()


def tiny_batch(n=8, length=12):
    g = torch.Generator().manual_seed(1)
    return {"pixel_values": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                          generator=g),
            "input_ids": torch.randint(100, 1000, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.tensor([0, 1, 2, 3, IGNORE, 5, 6, 7][:n])}


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("weight", [0.5, 0.0])
def test_micro_batches_give_the_full_batch_gradient_with_dropout_on(weight):
    """GradCache: the gradient of CE + lambda * InfoNCE over the whole batch, exactly
    (float64), the logit scale and the CE term included, dropout masks replayed."""
    batch, micro = tiny_batch(), 3
    model = tiny_model().train()
    torch.manual_seed(7)
    chunks = [{k: v[i:i + micro] for k, v in batch.items()} for i in range(0, 8, micro)]
    outs = [model(**c) for c in chunks]  # the same masks the micro-batched pass draws
    labels = batch["labels"]
    ce = sum(torch.nn.functional.cross_entropy(o.logits, c["labels"], ignore_index=IGNORE,
                                               reduction="sum") for o, c in zip(
                                                   outs, chunks, strict=True)) / 7
    nce = clip_loss(torch.cat([o.text_embed for o in outs]),
                    torch.cat([o.image_embed for o in outs]), outs[0].logit_scale)
    (ce + weight * nce if weight else ce).backward()
    want = grads(model)
    rng_after_reference = torch.get_rng_state()
    assert (labels != IGNORE).sum() == 7

    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    parts = micro_batched_backward(model, batch, micro, weight, "fp32", grad_scaler(
        torch.device("cpu"), "fp32"))
    got = grads(model)
    assert want.keys() == got.keys() and ("logit_scale" in got) == bool(weight)
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-8, atol=1e-10, msg=name)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-10)
    assert parts["contrastive"].item() == pytest.approx(nce.item(), rel=1e-10)
    if weight:
        assert torch.equal(torch.get_rng_state(), rng_after_reference)


def test_without_dropout_micro_batches_equal_one_pass():
    batch = tiny_batch()
    model = tiny_model(dropout=0.0).train()
    out = model(**batch)
    T.compute_loss(out, batch["labels"], 0.5)[0].backward()
    want = grads(model)
    model.zero_grad(set_to_none=True)
    micro_batched_backward(model, batch, 2, 0.5, "fp32", grad_scaler(torch.device("cpu"),
                                                                        "fp32"))
    for name, g in want.items():
        torch.testing.assert_close(grads(model)[name], g, rtol=1e-8, atol=1e-10, msg=name)


def test_fp16_with_grad_scaler_stays_finite_and_skips_an_inf_step():
    model = EmoticonModel(get_profile("smoke").model)
    cfg = TrainConfig(lr=1e-3)
    device = torch.device("cpu")
    opt, sched = T.make_optimizer(model, cfg, device, 10)
    scaler = grad_scaler(device, "fp16")
    assert scaler.is_enabled()
    batch = {k: v for k, v in tiny_batch().items()}
    for _ in range(2):
        losses = T.train_step(model, batch, opt, sched, cfg, "fp16", scaler)
        assert torch.isfinite(losses).all()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scale = scaler.get_scale()
    poison = model.classifier[-1].weight.register_hook(lambda g: g * float("inf"))
    T.train_step(model, batch, opt, sched, cfg, "fp16", scaler)
    poison.remove()
    assert scaler.get_scale() < scale  # the step was skipped and the scale backed off
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    with autocast(device, "fp16"):
        assert model(**batch).logits.dtype == torch.float16


def test_hidden_labels_are_a_seeded_share_of_training_posts_only(tiny_synth):
    exp = experiment("smoke", tiny_synth, progress=False)
    cache = exp.cache
    hidden = hide_labels(cache, 0.25, seed=3)
    train = cache.indices("train")
    kept = (hidden.labels[train] != IGNORE).sum().item()
    assert kept == round(0.25 * len(train))
    for split in ("val", "test"):
        idx = cache.indices(split)
        assert torch.equal(hidden.labels[idx], cache.labels[idx])
    assert torch.equal(hide_labels(cache, 0.25, seed=3).labels, hidden.labels)
    assert not torch.equal(hide_labels(cache, 0.25, seed=4).labels, hidden.labels)
    assert hide_labels(cache, 1.0, seed=3) is cache


def test_a_run_with_hidden_labels_trains_and_reports(tiny_synth, tmp_path):
    res = run(tiny_synth, tmp_path / "semi", epochs=2, label_fraction=0.1)
    assert np.isfinite(res.history["train_loss"]).all()
    assert (res.history["train_contrastive"] > 0).all()
    assert res.test_metrics["n"] > 0


def test_fit_plans_micro_batches_from_the_config(tiny_synth, tmp_path):
    exp = experiment("smoke", tiny_synth, progress=False, epochs=1, micro_batch=4,
                     batch_size=16)
    model = EmoticonModel(exp.model)
    res = fit(model, exp.cache, exp.train, tmp_path / "m", progress=False)
    assert (res.precision, res.micro_batch) == ("fp32", 4)
