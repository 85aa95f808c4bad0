"""The throughput benchmark: its smoke run, its FLOP count, its data-path measurement,
and the step and batch options it relies on."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emolib.config import get_profile
from emolib.data import IMAGE_MEAN, IMAGE_STD, BatchIterator, build_cache, load_dataset
from emolib.encoders import load_tokenizer
from emolib.model import EmoticonModel, ModelOutput
from emolib.train import DistInfo, make_optimizer, train_batches, train_step

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def smoke_cache(tiny_synth, tmp_path_factory):
    """The smoke profile's cache of a private copy of the tiny dataset (tests/test_data.py
    copies the shared folder and expects no cache in it)."""
    root = tmp_path_factory.mktemp("bench") / "emosynth"
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("cache"))
    prof = get_profile("smoke")
    info = load_dataset(root)
    tok = load_tokenizer(prof.model)
    return prof, info, build_cache(info, tok, prof.model.image_size, prof.model.max_length,
                                   progress=False)


def test_smoke_benchmark_writes_json_with_positive_numbers(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--data", str(tmp_path / "d"),
                        "--out", str(tmp_path / "res"), "--steps", "2"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    [path] = (tmp_path / "res").glob("train_throughput_*_smoke.json")
    res = json.loads(path.read_text())
    for key in ("device_name", "torch", "transformers", "batch_size", "steps", "params",
                "flops_per_sample", "attn_implementation"):
        assert res[key], key
    assert res["device_kind"] == "cpu" and res["steps"] == 2
    for run in ("baseline", "ours"):
        for key in ("samples_per_s", "ms_per_step", "mfu", "mean_text_width"):
            assert res[run][key] > 0, (run, key)
        assert "peak_gpu_mem_gib" in res[run]
    assert res["ratio_ours_over_baseline"] > 0
    assert res["data_path"]["samples_per_s"] > 0
    assert isinstance(res["data_path"]["bottleneck"], bool)
    assert "samples/s" in r.stdout and str(path) in r.stdout


def test_flop_count_of_a_linear_layer_is_the_hand_count():
    b, i, o = 3, 8, 4
    lin, x = nn.Linear(i, o), torch.randn(b, i)
    # forward x @ W.T: 2*b*i*o; backward to W only (x needs no gradient): 2*b*i*o more
    assert bench.count_flops(lambda: lin(x).sum().backward()) == 4 * b * i * o
    xg = x.clone().requires_grad_()  # ... and to x as well: a third matmul
    assert bench.count_flops(lambda: lin(xg).sum().backward()) == 6 * b * i * o


class _Linear(nn.Module):
    """The smallest "model": logits from one linear layer."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x, **_):
        return ModelOutput(self.lin(x))


def test_train_flops_per_sample_counts_forward_and_backward_per_sample():
    batch = {"x": torch.randn(4, 5), "labels": torch.tensor([0, 1, 2, 0])}
    assert bench.train_flops_per_sample(_Linear(), batch, 0.5) == 2 * 2 * 5 * 3


def test_data_path_measurement(smoke_cache):
    _, _, cache = smoke_cache
    res = bench.measure_data_path(cache, 256, torch.device("cpu"), batches=3, warmup=1)
    assert res["samples_per_s"] > 0
    assert res["batch_size"] == min(256, len(cache))


def test_fixed_width_batches_for_compile(smoke_cache):
    prof, _, cache = smoke_cache
    train = cache.indices("train")
    idx = train[np.argsort(cache.attention_mask[train].sum(1).numpy())[:8]]  # short texts
    trimmed = BatchIterator(cache, idx, 8).batch(idx)
    fixed = BatchIterator(cache, idx, 8, trim=False).batch(idx)
    assert fixed["input_ids"].shape[1] == prof.model.max_length > trimmed["input_ids"].shape[1]
    width = trimmed["input_ids"].shape[1]
    assert torch.equal(fixed["input_ids"][:, :width], trimmed["input_ids"])
    assert not fixed["attention_mask"][:, width:].any()
    cfg = prof.train
    widths = {b["input_ids"].shape[1] for b in train_batches(
        cache, dataclasses.replace(cfg, compile=True), DistInfo())}
    assert widths == {prof.model.max_length}


def test_normalize_images_uses_the_channel_statistics():
    from emolib.data import normalize_images

    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    assert torch.equal(normalize_images(images), (images.float() / 255.0 - mean) / std)


def test_train_step_updates_the_weights_and_returns_its_losses_unread(smoke_cache):
    prof, _, cache = smoke_cache
    torch.manual_seed(0)
    model = EmoticonModel(prof.model).train()
    cfg = prof.train
    opt, sched = make_optimizer(model, cfg, torch.device("cpu"), total_steps=10)
    before = model.classifier[-1].weight.detach().clone()
    batch = next(iter(train_batches(cache, cfg, DistInfo())))
    sums = train_step(model, batch, opt, sched, cfg)
    assert sums.shape == (3,) and not sums.requires_grad
    loss, ce, contrastive = sums.tolist()
    assert loss == pytest.approx(ce + cfg.contrastive_weight * contrastive, rel=1e-5)
    assert not torch.equal(model.classifier[-1].weight, before)
    assert sched.last_epoch == 1
    assert np.isfinite(loss)


def test_frozen_features_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("frozen_bench",
                                                  ROOT / "benchmarks" / "frozen_features.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--out", str(tmp_path)])
    saved = json.loads(next(tmp_path.glob("frozen_features_*_smoke.json")).read_text())
    assert saved["frozen_layers"] == 2 and saved["text_layers"] == 3
    assert set(saved["ms_per_step"]) == {"all_layers", "cached_features"}
    assert saved["speedup"] > 0 and saved["feature_seconds"] >= 0
    assert result["loss_rel_diff"] < 1e-3  # same batches and weights: same loss (to rounding)
