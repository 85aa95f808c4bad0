"""The training loop: selection on validation, early stopping, exact resume, schedule,
micro-batches, precision and hidden labels."""

import dataclasses
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
# fp16 starts at a loss scale of 2**16: GradScaler skips the first overflowing steps, and
# torch warns that the schedule stepped without an optimizer step (as it should there)
FP16_SKIPS = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


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
        # past the end (a step counted twice, a longer resumed run): it stays at 0
        assert all(f(total + k) == pytest.approx(0.0, abs=1e-12) for k in (1, total))


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


def one_pass_and_micro_batches(model, batch, micro, precision):
    """The gradients of one pass over ``batch`` (under ``precision``'s autocast) and of
    GradCache in micro-batches of ``micro``, from the same model."""
    with autocast(torch.device("cpu"), precision):
        out = model(**batch)
    T.compute_loss(out, batch["labels"], 0.5)[0].backward()
    want = grads(model)
    model.zero_grad(set_to_none=True)
    micro_batched_backward(model, batch, micro, 0.5, precision,
                           grad_scaler(torch.device("cpu"), precision))
    return want, grads(model)


def test_without_dropout_micro_batches_equal_one_pass():
    want, got = one_pass_and_micro_batches(tiny_model(dropout=0.0).train(), tiny_batch(),
                                           2, "fp32")
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-8, atol=1e-10, msg=name)


@FP16_SKIPS
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
    saved = json.loads((tmp_path / "semi" / "run.json").read_text())
    assert saved["train"]["label_fraction"] == 0.1
    # hidden training labels never reach evaluation: the test split keeps every label
    cache = res.experiment.cache
    assert (cache.labels != IGNORE).all()
    best = EmoticonModel.load(tmp_path / "semi" / "best")
    assert res.test_metrics == evaluate(best, cache, "test")
    assert res.test_metrics["n"] == len(cache.indices("test"))


def test_fit_plans_micro_batches_from_the_config(tiny_synth, tmp_path):
    exp = experiment("smoke", tiny_synth, progress=False, epochs=1, micro_batch=4,
                     batch_size=16)
    model = EmoticonModel(exp.model)
    res = fit(model, exp.cache, exp.train, tmp_path / "m", progress=False)
    assert (res.precision, res.micro_batch) == ("fp32", 4)


# ---------------------------------------------------------------- fit, directly and fast
@pytest.fixture(scope="module")
def uneven_exp(uneven_synth):
    return experiment("smoke", uneven_synth, progress=False)


def fit_once(exp, out, script=None, monkeypatch=None, model=None, resume=True,
             progress=False, **overrides):
    """``fit`` of a freshly seeded smoke model; ``script``: the validation MCC per epoch."""
    cfg = dataclasses.replace(exp.train, **{"epochs": 2, "batch_size": 32, "patience": 10,
                                            **overrides})  # 2 steps an epoch: fast
    if script is not None:
        values, real = iter(script), T.evaluate

        def scripted(model, cache, split, *a):
            res = real(model, cache, split, *a)
            res["mcc"] = next(values)
            return res

        monkeypatch.setattr(T, "evaluate", scripted)
    T.set_seed(0)
    model = model or EmoticonModel(exp.model)
    return model, fit(model, exp.cache, cfg, out, progress=progress, resume=resume)


def test_ties_do_not_move_the_best_epoch_and_patience_counts_from_it(uneven_exp, tmp_path,
                                                                     monkeypatch):
    _, res = fit_once(uneven_exp, tmp_path, [0.5, 0.6, 0.6, 0.6, 0.9], monkeypatch,
                      epochs=5, patience=2)
    assert (res.best_epoch, res.best_val_mcc, res.stopped_early) == (2, 0.6, True)
    assert len(res.history) == 4
    assert json.loads((tmp_path / "best" / "config.json").read_text())["epoch"] == 2
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (state["epoch"], state["best_epoch"], state["bad_epochs"]) == (4, 2, 2)
    assert state["best_mcc"] == 0.6


def test_patience_one_stops_after_the_first_bad_epoch(uneven_exp, tmp_path, monkeypatch):
    _, res = fit_once(uneven_exp, tmp_path, [0.3, 0.2, 0.9], monkeypatch, epochs=3,
                      patience=1)
    assert len(res.history) == 2 and res.best_epoch == 1 and res.stopped_early


def test_a_stopped_run_resumes_to_nothing_and_a_fresh_start_ignores_the_checkpoint(
        uneven_exp, tmp_path, monkeypatch):
    _, first = fit_once(uneven_exp, tmp_path, [0.5, 0.4, 0.3], monkeypatch, epochs=6,
                        patience=2)
    assert len(first.history) == 3 and first.stopped_early
    monkeypatch.setattr(T, "text_features", lambda *a, **k: pytest.fail("nothing to train"))
    _, again = fit_once(uneven_exp, tmp_path, [], monkeypatch, epochs=6, patience=2)
    assert again.stopped_early and again.best_epoch == 1 and len(again.history) == 3
    pd.testing.assert_frame_equal(again.history, first.history)
    monkeypatch.undo()
    model, fresh = fit_once(uneven_exp, tmp_path, None, None, epochs=1, resume=False)
    assert len(fresh.history) == 1 and not fresh.stopped_early


def test_history_rows_say_what_happened_in_each_epoch(uneven_exp, tmp_path, monkeypatch):
    """train_* are the means of the steps' losses; lr is the schedule's after the epoch
    (0 at the very end: the schedule spans exactly the steps taken); timings agree."""
    steps, real = [], T.train_step

    def recording(*a, **k):
        out = real(*a, **k)
        steps.append(out.detach().clone())
        return out

    monkeypatch.setattr(T, "train_step", recording)
    model, res = fit_once(uneven_exp, tmp_path, epochs=2)
    n_train = len(uneven_exp.cache.indices("train"))
    per_epoch = n_train // 32  # >= 2 batches: the last, partial one is dropped
    assert len(steps) == 2 * per_epoch
    h = res.history
    for e in range(2):
        mean = torch.stack(steps[e * per_epoch:(e + 1) * per_epoch]).mean(0).tolist()
        assert [h.at[e, c] for c in ("train_loss", "train_ce", "train_contrastive")] == \
            pytest.approx(mean, rel=1e-5)
    assert h["epoch"].tolist() == [1, 2]
    f = warmup_cosine(2 * per_epoch, uneven_exp.train.warmup_ratio)
    assert h.at[0, "lr"] == pytest.approx(uneven_exp.train.lr * f(per_epoch))
    assert h.at[1, "lr"] == pytest.approx(0.0, abs=1e-12)
    assert h.at[1, "temperature"] == pytest.approx(model.temperature)
    assert (h["samples_per_second"] * h["epoch_seconds"]).tolist() == \
        pytest.approx([per_epoch * 32] * 2)
    assert h["peak_gpu_memory_gib"].isna().all()
    assert {c for c in h.columns if c.startswith("val_")} == \
        {"val_accuracy", "val_mcc", "val_macro_f1", "val_top3_accuracy"}
    on_disk = pd.read_csv(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(on_disk.drop(columns="peak_gpu_memory_gib"),
                                  h.drop(columns="peak_gpu_memory_gib"), check_dtype=False)
    assert json.loads((tmp_path / "metrics.json").read_text())[1]["epoch"] == 2


def test_a_small_training_set_keeps_its_last_partial_batch(uneven_exp, tmp_path, monkeypatch):
    steps, real = [], T.train_step
    monkeypatch.setattr(T, "train_step", lambda *a, **k: steps.append(len(a[1]["labels"]))
                        or real(*a, **k))
    n_train = len(uneven_exp.cache.indices("train"))
    batch = n_train // 2 + 1  # fewer than two batches: nothing is dropped
    fit_once(uneven_exp, tmp_path, epochs=1, batch_size=batch)
    assert steps == [batch, n_train - batch]


def test_lambda_zero_freezes_the_temperature(uneven_exp, tmp_path):
    model, res = fit_once(uneven_exp, tmp_path, epochs=1, contrastive_weight=0.0)
    assert not model.logit_scale.requires_grad
    assert res.history.at[0, "temperature"] == pytest.approx(uneven_exp.model.init_temperature)
    assert res.history.at[0, "train_loss"] == pytest.approx(res.history.at[0, "train_ce"])
    assert res.history.at[0, "train_contrastive"] > 0  # reported all the same


def test_fit_sets_threads_and_leaves_cpu_matmuls_exact(uneven_exp, tmp_path):
    before = torch.get_num_threads()
    try:
        fit_once(uneven_exp, tmp_path, epochs=1, num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert torch.get_float32_matmul_precision() == "highest"  # TF32 is a CUDA matter


def test_progress_lines(uneven_exp, tmp_path, capsys):
    cfg = dataclasses.replace(uneven_exp.train, epochs=1, batch_size=32)
    T.set_seed(0)
    fit(EmoticonModel(uneven_exp.model), uneven_exp.cache, cfg, tmp_path)  # on by default
    cfg2 = dataclasses.replace(cfg, epochs=2)
    res = fit(EmoticonModel(uneven_exp.model), uneven_exp.cache, cfg2, tmp_path,
              progress=True)
    captured = capsys.readouterr()
    out = captured.out
    row = res.history.iloc[0]
    # the bars (stderr): the text features, then one per epoch run, counted from 1
    assert "epoch 1/1" in captured.err and "epoch 2/2" in captured.err
    assert "epoch 1/2" not in captured.err  # resumed after epoch 1: not run again
    assert out.count("precision fp32, batch 32 in micro-batches of 32 on cpu\n") == 2
    assert (f"epoch 1: loss {row['train_loss']:.3f}  val acc {row['val_accuracy']:.3f}  "
            f"val MCC {row['val_mcc']:.3f}  (best)\n") in out
    assert f"resumed from {tmp_path / 'checkpoint.pt'} after epoch 1\n" in out
    assert "epoch 2: loss " in out


def test_compile_serves_fixed_width_batches(uneven_exp, tmp_path, monkeypatch):
    widths, compiled = set(), []

    def fake_compile(model, **kw):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = EmoticonModel(uneven_exp.model)
    model.register_forward_pre_hook(
        lambda m, a, kw: widths.add(kw["input_ids"].shape[1]) if m.training else None,
        with_kwargs=True)
    fit_once(uneven_exp, tmp_path, model=model, epochs=1, compile=True)
    assert compiled == [model] and widths == {uneven_exp.model.max_length}


def test_grad_checkpointing_is_switched_on_for_trained_encoders_only(uneven_exp, tmp_path):
    exp = dataclasses.replace(uneven_exp, model=dataclasses.replace(
        uneven_exp.model, text=dataclasses.replace(uneven_exp.model.text, freeze=True)))
    model, _ = fit_once(exp, tmp_path, epochs=1, grad_checkpointing=True)
    def checkpointing(backbone):  # transformers' new name where it exists
        if hasattr(backbone, "is_activation_checkpointing"):
            return backbone.is_activation_checkpointing
        return backbone.is_gradient_checkpointing

    assert checkpointing(model.image_encoder.backbone)
    assert not checkpointing(model.text_encoder.backbone)


@FP16_SKIPS
def test_fp16_resume_restores_the_loss_scale(uneven_exp, tmp_path):
    fit_once(uneven_exp, tmp_path, epochs=1, precision="fp16")
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["scaler"]["scale"] > 0
    state["scaler"]["scale"] = 8.0
    torch.save(state, tmp_path / "checkpoint.pt")
    _, res = fit_once(uneven_exp, tmp_path, epochs=2, precision="fp16")
    assert res.precision == "fp16" and len(res.history) == 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]["scale"] in (4.0, 8.0)


def test_checkpoints_are_loaded_without_unpickling_code(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "x": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    good = tmp_path / "good.pt"
    T.save_checkpoint({"w": torch.ones(2)}, good)
    assert load_checkpoint(good)["w"].device == torch.device("cpu")


# ---------------------------------------------------------------- the pieces of a step
def test_param_groups_split_pretrained_and_decay(monkeypatch):
    model = EmoticonModel(get_profile("smoke").model)
    model.text_encoder.source = "pretrained:test"  # as if loaded from a checkpoint
    model.image_encoder.backbone.layers[0].requires_grad_(False)
    cfg = TrainConfig(lr=1e-3, pretrained_lr=1e-5, weight_decay=0.05)
    groups = T.param_groups(model, cfg)
    text = {id(p) for p in model.text_encoder.parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(id(p) for p in trainable)  # each exactly once
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        pre = {id(p) in text for p in g["params"]}
        decay = {p.dim() >= 2 and "type_embed" not in names[id(p)] for p in g["params"]}
        assert len(pre) == len(decay) == 1, "a group mixes kinds"
        assert g["lr"] == (1e-5 if pre == {True} else 1e-3)
        assert g["weight_decay"] == (0.05 if decay == {True} else 0.0)
    kinds = [({id(p) in text for p in g["params"]}.pop(), g["weight_decay"] == 0.0)
             for g in groups]
    assert kinds == sorted(kinds) and len(kinds) == 4
    assert any(names[id(p)] == "logit_scale" for g in groups if g["weight_decay"] == 0
               for p in g["params"])


def test_make_optimizer_schedules_from_the_first_step():
    model = EmoticonModel(get_profile("smoke").model)
    cfg = TrainConfig(lr=1e-3, warmup_ratio=0.25)
    opt, sched = T.make_optimizer(model, cfg, torch.device("cpu"), 8)
    assert isinstance(opt, torch.optim.AdamW) and not opt.defaults["fused"]
    assert sched.get_last_lr()[0] == pytest.approx(1e-3 / 2)  # warmup 2 steps: 1/2
    opt.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(1e-3)


def test_set_seed_seeds_python_numpy_and_torch():
    import random

    draws = []
    for _ in range(2):
        T.set_seed(2**32 + 5)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    T.set_seed(5)
    assert np.random.rand() == draws[0][1]  # numpy takes the seed modulo 2**32
    for seed in (2, 3, 1000):  # and the seed itself, not some function of it
        T.set_seed(seed)
        assert np.random.rand() == np.random.RandomState(seed).rand()


def step_setup(**cfg):
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).train()
    cfg = TrainConfig(**{"lr": 1e-3, **cfg})
    opt, sched = T.make_optimizer(model, cfg, torch.device("cpu"), 10)
    return model, cfg, opt, sched


def test_train_step_returns_its_losses_and_steps_everything_once():
    model, cfg, opt, sched = step_setup()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    out = T.train_step(model, tiny_batch(), opt, sched, cfg)
    assert out.shape == (3,) and not out.requires_grad
    loss, ce, nce = out.tolist()
    assert loss == pytest.approx(ce + cfg.contrastive_weight * nce, rel=1e-6)
    with torch.no_grad():
        ref = T.compute_loss(model_at(before, model, rng), tiny_batch()["labels"], 0.5)[1]
    assert ce == pytest.approx(ref["ce"].item(), rel=1e-5)
    assert nce == pytest.approx(ref["contrastive"].item(), rel=1e-5)
    assert sched.last_epoch == 1
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "logit_scale" in moved and "classifier.2.weight" in moved


def model_at(state, model, rng):
    """The output of ``model`` with the parameters ``state``, dropout drawn from ``rng``."""
    twin = EmoticonModel(model.cfg).train()
    twin.load_state_dict({**model.state_dict(), **state})
    torch.set_rng_state(rng)
    return twin(**tiny_batch())


def test_train_step_clips_the_gradient_norm():
    for clip, small in ((1e-3, True), (None, False)):
        model, cfg, opt, sched = step_setup(grad_clip=clip)
        T.train_step(model, tiny_batch(), opt, sched, cfg)
        norm = torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in model.parameters() if p.grad is not None]))
        assert (norm <= 1e-3 * 1.001) == small


def test_train_step_clamps_the_log_scale_after_the_step():
    model, cfg, opt, sched = step_setup()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    T.train_step(model, tiny_batch(), opt, sched, cfg)
    assert model.logit_scale.item() == pytest.approx(math.log(100))


def test_micro_batches_only_when_they_split_the_batch(monkeypatch):
    calls = []
    monkeypatch.setattr(T, "micro_batched_backward",
                        lambda *a, **k: calls.append(a[2]) or pytest.fail("split"))
    model, cfg, opt, sched = step_setup()
    T.train_step(model, tiny_batch(), opt, sched, cfg, micro_batch=8)
    T.train_step(model, tiny_batch(), opt, sched, cfg, micro_batch=None)
    assert calls == []
    monkeypatch.undo()
    spy = []
    real = T.micro_batched_backward
    monkeypatch.setattr(T, "micro_batched_backward", lambda *a, **k: spy.append(a[2])
                        or real(*a, **k))
    T.train_step(model, tiny_batch(), opt, sched, cfg, micro_batch=7)
    assert spy == [7]


class NoSyncRecorder(torch.nn.Module):
    """A DDP stand-in: records which micro-batches ran inside ``no_sync``."""

    def __init__(self, model):
        super().__init__()
        self.module, self.inside, self.calls = model, False, []

    def no_sync(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            self.inside = True
            yield
            self.inside = False

        return ctx()

    def forward(self, **batch):
        if torch.is_grad_enabled():
            self.calls.append(self.inside)
        return self.module(**batch)


@pytest.mark.parametrize("weight", [0.5, 0.0])
def test_gradients_are_synchronised_once_on_the_last_micro_batch(weight):
    wrapper = NoSyncRecorder(tiny_model())
    micro_batched_backward(wrapper, tiny_batch(), 3, weight, "fp32",
                           grad_scaler(torch.device("cpu"), "fp32"))
    assert wrapper.calls == [True, True, False]


def test_hide_labels_keeps_at_least_one_and_leaves_a_full_cache_alone(tiny_synth):
    cache = experiment("smoke", tiny_synth, progress=False).cache
    train = cache.indices("train")
    tiny = hide_labels(cache, 1e-6, seed=0)
    assert (tiny.labels[train] != IGNORE).sum().item() == 1
    assert (tiny.labels == IGNORE).sum().item() == len(train) - 1
    assert hide_labels(cache, 0.5, seed=0).labels.dtype == torch.long


def test_evaluate_reports_the_split_and_its_size(tiny_synth):
    exp = experiment("smoke", tiny_synth, progress=False)
    model = EmoticonModel(exp.model)
    res = evaluate(model, exp.cache, "val", batch_size=7)
    assert res["split"] == "val" and res["n"] == len(exp.cache.indices("val"))
    big = evaluate(model, exp.cache, "val")
    assert {k: big[k] for k in ("accuracy", "mcc")} == {k: res[k] for k in ("accuracy", "mcc")}
    assert evaluate(model, exp.cache)["split"] == "test"


def test_micro_batches_under_bf16_autocast_match_one_pass():
    """Both passes of GradCache run under the run's autocast: the gradient is that of one
    bf16 pass over the batch, to bf16 rounding."""
    want, got = one_pass_and_micro_batches(tiny_model(dropout=0.0).float().train(),
                                           tiny_batch(), 3, "bf16")
    assert got.keys() == want.keys()
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=0.1, atol=2e-3, msg=name)


def test_plan_fits_the_micro_batch_to_the_gpu_budget(monkeypatch):
    """On a GPU the micro-batch follows the free memory (asked of the run's device)."""
    from emolib.hardware import activation_bytes_per_sample, choose_micro_batch

    model = EmoticonModel(get_profile("smoke").model)
    params = sum(p.numel() for p in model.parameters())
    budget = int((18 * params + 10 * activation_bytes_per_sample(model, "bf16")) / 0.85)
    asked = []
    monkeypatch.setattr(T, "gpu_budget", lambda device: asked.append(device) or budget)
    cuda = torch.device("cuda", 1)
    cfg = TrainConfig(batch_size=64, precision="bf16")
    want = choose_micro_batch(64, activation_bytes_per_sample(model, "bf16"), params, budget)
    assert want == 8  # the budget binds: 10 fit, a power of two
    assert T.plan(model, cfg, cuda) == ("bf16", want) and asked == [cuda]
    fp32 = choose_micro_batch(64, activation_bytes_per_sample(model, "fp32"), params, budget)
    assert fp32 < want and T.plan(model, dataclasses.replace(cfg, precision="fp32"),
                                  cuda) == ("fp32", fp32)
    assert T.plan(model, dataclasses.replace(cfg, micro_batch=100), cuda) == ("bf16", 64)
    assert T.plan(model, cfg, torch.device("cpu")) == ("bf16", 64)  # the CPU: whole batch
    assert len(asked) == 2


def test_a_one_branch_model_trains_with_lambda_zero(uneven_exp, tmp_path):
    exp = dataclasses.replace(uneven_exp, model=dataclasses.replace(uneven_exp.model,
                                                                     mode="text"))
    _, res = fit_once(exp, tmp_path, epochs=1, contrastive_weight=0.0)
    assert res.history.at[0, "temperature"] is None or np.isnan(res.history.at[0,
                                                                                "temperature"])
    assert res.history.at[0, "train_contrastive"] == 0.0


def test_fit_shuffles_trims_and_hides_labels_by_its_seed_and_is_quiet_when_asked(
        uneven_exp, tmp_path, monkeypatch, capsys):
    seen, real = [], T.train_step

    def recording(model, batch, *a, **k):
        seen.append((batch["labels"].clone(), batch["input_ids"].shape[1]))
        return real(model, batch, *a, **k)

    monkeypatch.setattr(T, "train_step", recording)
    runs = {}
    for seed in (0, 1):
        seen.clear()
        _, res = fit_once(uneven_exp, tmp_path / str(seed), epochs=2, seed=seed,
                          label_fraction=0.5)
        runs[seed] = ([lab for lab, _ in seen], [w for _, w in seen], res)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""  # progress=False: not a line, not a bar
    labels, widths, res = runs[0]
    half = len(labels) // 2
    # each epoch draws its own order from (seed, epoch); another seed, another order
    assert not all(torch.equal(a, b) for a, b in zip(labels[:half], labels[half:], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(labels, runs[1][0], strict=True))
    train = uneven_exp.cache.indices("train")
    for seed, (got, _, _) in runs.items():  # epoch 1 of each seed: its own shuffle
        first = torch.cat(got[:len(got) // 2])
        order = train[np.random.default_rng([seed, 0]).permutation(len(train))]
        hidden = hide_labels(uneven_exp.cache, 0.5, seed=seed).labels
        assert torch.equal(first, hidden[order[:len(first)]]), seed
    assert min(widths) < uneven_exp.model.max_length  # batches trimmed to their texts


def test_grad_cache_widens_16_bit_embeddings_and_keeps_wider_ones():
    """GradCache's InfoNCE and its surrogate see at least float32: embeddings made under
    16-bit autocast are widened, float64 (the exactness tests') is kept."""
    for dtype, want in ((torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                        (torch.float32, torch.float32), (torch.float64, torch.float64)):
        x = torch.tensor([0.1, -2.5], dtype=dtype)
        got = T._wide(x)
        assert got.dtype == want, dtype
        assert torch.equal(got.double(), x.double())  # widening changes no value


@FP16_SKIPS
def test_fit_hands_its_plan_to_every_step_and_to_evaluation(uneven_exp, tmp_path,
                                                           monkeypatch):
    """The precision, scaler and micro-batch that ``fit`` planned are the ones each step
    and each validation use: one scaler for the whole run (its loss scale carries over)."""
    steps, evals = [], []
    real_step, real_eval = T.train_step, T.evaluate

    def step(model, batch, opt, sched, cfg, precision, scaler, micro):
        steps.append((precision, scaler, micro))
        return real_step(model, batch, opt, sched, cfg, precision, scaler, micro)

    def evaluate(model, cache, split, batch_size, precision):
        evals.append((split, precision))
        return real_eval(model, cache, split, batch_size, precision)

    monkeypatch.setattr(T, "train_step", step)
    monkeypatch.setattr(T, "evaluate", evaluate)
    fit_once(uneven_exp, tmp_path, epochs=2, precision="fp16", micro_batch=16)
    assert len(steps) == 4 and len(evals) == 2
    assert {(p, m) for p, _, m in steps} == {("fp16", 16)}
    scalers = {id(s) for _, s, _ in steps}
    assert len(scalers) == 1 and steps[0][1].is_enabled()  # one live GradScaler
    assert evals == [("val", "fp16")] * 2


def test_history_averages_the_epochs_steps_and_times_them(uneven_exp, tmp_path,
                                                          monkeypatch):
    """train_loss/ce/contrastive are the mean of the epoch's step losses (also for an
    epoch of one step); epoch_seconds is a duration within the call's own."""
    import time

    losses, real = [], T.train_step
    monkeypatch.setattr(T, "train_step", lambda *a, **k: losses.append(real(*a, **k))
                        or losses[-1])
    n_train = len(uneven_exp.cache.indices("train"))
    t0 = time.perf_counter()
    _, res = fit_once(uneven_exp, tmp_path, epochs=2, batch_size=n_train)  # 1 step each
    wall = time.perf_counter() - t0
    assert len(losses) == 2
    for epoch, step in enumerate(losses):
        row = res.history.iloc[epoch]
        assert [row["train_loss"], row["train_ce"], row["train_contrastive"]] == \
            pytest.approx(step.tolist())
    assert (res.history["epoch_seconds"] > 0).all()
    assert res.history["epoch_seconds"].sum() < wall
    assert res.history["samples_per_second"].tolist() == pytest.approx(
        (n_train / res.history["epoch_seconds"]).tolist())


def test_progress_false_is_quiet_in_every_part_and_true_shows_each(uneven_exp, tmp_path,
                                                                   capsys):
    """With a frozen text encoder (its features computed once, with a bar of their own):
    progress=False prints nothing, also when resuming; progress=True shows the features'
    bar, the epoch bars and the resume line."""
    text = dataclasses.replace(uneven_exp.model.text, freeze=True)
    exp = dataclasses.replace(uneven_exp, model=dataclasses.replace(uneven_exp.model,
                                                                     text=text))
    fit_once(exp, tmp_path / "quiet", epochs=1)
    fit_once(exp, tmp_path / "quiet", epochs=2)  # resumes after epoch 1
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    fit_once(exp, tmp_path / "quiet", epochs=3, progress=True)
    shown = capsys.readouterr()
    assert "frozen text encoder" in shown.err and "epoch 3/3" in shown.err
    assert "resumed from" in shown.out
    # a finished run resumed: nothing to train, so no features are computed either
    fit_once(exp, tmp_path / "quiet", epochs=3, progress=True)
    assert "frozen text encoder" not in capsys.readouterr().err


def test_evaluate_predicts_in_the_precision_it_is_given(tiny_synth, monkeypatch):
    exp = experiment("smoke", tiny_synth, progress=False)
    model = EmoticonModel(exp.model)
    asked, real = [], T.predict
    monkeypatch.setattr(T, "predict", lambda m, b, precision: asked.append(precision)
                        or real(m, b, precision))
    plain = evaluate(model, exp.cache, "val")
    half = evaluate(model, exp.cache, "val", 64, "bf16")
    assert asked == ["fp32", "bf16"]
    assert half["n"] == plain["n"] and abs(half["accuracy"] - plain["accuracy"]) < 0.2


def test_a_progress_line_marks_only_the_improving_epochs(uneven_exp, tmp_path, monkeypatch,
                                                         capsys):
    fit_once(uneven_exp, tmp_path, [0.5, 0.4, 0.6], monkeypatch, epochs=3, progress=True)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert [ln.endswith("  (best)") for ln in lines] == [True, False, True]
    assert lines[1].endswith(f"val MCC {0.4:.3f}")  # nothing after the numbers


def one_step(micro=None, **train):
    torch.manual_seed(0)
    model = tiny_model(dropout=0.0).train()  # float64: AdamW's first step is close
    cfg = TrainConfig(lr=1e-3, **train)      # to sign(g), so exact sums
    opt, sched = T.make_optimizer(model, cfg, torch.device("cpu"), 10)
    return model, T.train_step(model, tiny_batch(), opt, sched, cfg, micro_batch=micro)


@pytest.mark.parametrize("weight,q", [(0.5, 0.0), (0.0, 0.0), (0.5, 0.7)])
def test_a_step_in_micro_batches_moves_the_model_as_one_pass(weight, q):
    """train_step with micro-batches (GradCache) and without: the same update, the
    contrastive term and the generalized CE included (dropout off: both passes exact)."""
    (one, out1), (micro, out2) = (one_step(m, contrastive_weight=weight, gce_q=q)
                                  for m in (None, 3))
    torch.testing.assert_close(out2, out1, rtol=1e-9, atol=1e-12)
    for (name, a), b in zip(one.named_parameters(), micro.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)


def test_train_step_takes_the_generalized_ce_from_the_config():
    (plain, out0), (gce, out1) = (one_step(gce_q=q) for q in (0.0, 0.7))
    assert out1[1] < out0[1], "(1 - p^q) / q < -log p: the reported CE term is GCE's"
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), gce.parameters(),
                                                      strict=True))



def test_fit_trains_on_the_augmented_images_only_when_asked(uneven_exp, tmp_path,
                                                              monkeypatch):
    seen, real = [], T.train_step
    monkeypatch.setattr(T, "augment", lambda images: torch.zeros_like(images))
    monkeypatch.setattr(T, "train_step", lambda model, batch, *a, **k: (
        seen.append(bool(batch["pixel_values"].any())), real(model, batch, *a, **k))[1])
    fit_once(uneven_exp, tmp_path / "on", epochs=1, augment=True)
    assert seen and not any(seen), "the step gets augment's images"
    seen.clear()
    fit_once(uneven_exp, tmp_path / "off", epochs=1, augment=False)
    assert seen and all(seen)
