import json
import math

import pandas as pd
import pytest
import torch

from emolib.config import get_profile
from emolib.model import EmoticonModel
from emolib.train import load_checkpoint, train, warmup_cosine

TIMING = ["epoch_seconds", "samples_per_second"]


def run(data, out, **kw):
    kw.setdefault("epochs", 3)
    return train("smoke", data, out, progress=False, batch_size=16, **kw)


def test_killed_and_resumed_run_equals_uninterrupted_run(tiny_synth, tmp_path):
    full = run(tiny_synth, tmp_path / "full", patience=10)
    part = run(tiny_synth, tmp_path / "part", patience=10, stop_after_epoch=1)
    assert len(part.history) == 1
    resumed = run(tiny_synth, tmp_path / "part", patience=10)
    assert len(resumed.history) == 3
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    pd.testing.assert_frame_equal(full.history.drop(columns=TIMING),
                                  resumed.history.drop(columns=TIMING))
    assert full.test_metrics == resumed.test_metrics


def test_outputs_of_a_run(tiny_synth, tmp_path):
    res = run(tiny_synth, tmp_path / "r", epochs=2)
    out = tmp_path / "r"
    for name in ("checkpoint.pt", "metrics.csv", "metrics.json", "test_metrics.json",
                 "run.json", "best/model.safetensors", "best/config.json", "tokenizer"):
        assert (out / name).exists(), name
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_accuracy", "val_mcc", "val_macro_f1", "temperature"} <= set(rows[0])
    assert res.test_metrics["n"] == int((res.cache.splits == "test").sum())
    best = EmoticonModel.load(out / "best")
    assert isinstance(best, EmoticonModel)
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temporaries


def test_early_stopping_on_validation_mcc(tiny_synth, tmp_path):
    res = run(tiny_synth, tmp_path / "es", epochs=8, patience=1, lr=1e-9)  # cannot improve
    assert len(res.history) < 8
    best = res.history["val_mcc"].idxmax()
    assert len(res.history) == best + 2  # stopped one epoch after the best


def test_training_reduces_the_loss(tiny_synth, tmp_path):
    res = run(tiny_synth, tmp_path / "learn", epochs=4, lr=3e-3, patience=10)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]


def test_schedule_warms_up_then_decays_to_zero():
    f = warmup_cosine(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.0, abs=1e-12)


def test_unknown_training_option_is_refused(tiny_synth, tmp_path):
    with pytest.raises(TypeError, match="unknown training option"):
        train("smoke", tiny_synth, tmp_path / "x", progress=False, epochz=1)


def test_profiles():
    for name in ("smoke", "cpu", "gpu"):
        p = get_profile(name)
        assert p.name == name
    assert get_profile("gpu").model.image_size == 224
    assert get_profile("gpu").model.max_length == 64
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("tpu")
