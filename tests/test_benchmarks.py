"""The throughput ladder (benchmarks/train_throughput.py): its smoke run's JSON says what
it measured, consistently, and its FLOP count follows the work done."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emolib.model import EmoticonModel

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"
RUNGS = ["fp32", "tf32", "no_sync", "cache"]  # eager CPU rungs: compile is a GPU matter


def _load_bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def smoke_result(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--data", str(tiny_synth),
                        "--out", str(out), "--steps", "3", "--reps", "2", "--warmup", "1",
                        "--workers", "0", "--rungs", ",".join(RUNGS)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    [path] = out.glob("train_throughput_*_b8_smoke.json")
    return json.loads(path.read_text()), r.stdout, path


def test_smoke_ladder_json_describes_the_run(smoke_result, tiny_synth):
    res, stdout, path = smoke_result
    assert (res["benchmark"], res["profile"], res["device_kind"]) == \
        ("train_throughput", "smoke", "cpu")
    assert (res["batch_size"], res["steps"], res["reps"], res["warmup"]) == (8, 3, 2, 1)
    assert res["random_init"] is True
    from emolib.run import experiment

    exp = experiment(bench.bench_profile(True), tiny_synth, progress=False)
    assert res["train_posts"] == len(exp.cache.indices("train"))
    assert res["params"] == sum(p.numel() for p in EmoticonModel(exp.model).parameters())
    assert (res["image_size"], res["max_length"]) == (32, 24)
    assert [r["rung"] for r in res["rungs"]] == RUNGS  # in the order asked for
    assert f"-> {path}" in stdout
    for line, rung in zip([ln for ln in stdout.splitlines() if ln.split()[:1]
                           and ln.split()[0] in RUNGS], RUNGS, strict=True):
        assert line.split()[0] == rung and "samples/s" in line


def test_each_rung_is_internally_consistent(smoke_result):
    res, _, _ = smoke_result
    peak = res["peak_flops"]
    assert peak == pytest.approx(bench.PEAK_BF16)
    for r in res["rungs"]:
        assert r["change"] == bench.RUNGS[r["rung"]]
        assert r["precision"] == "fp32"  # the CPU: autocast would be a no-op there anyway
        assert r["peak_gpu_mem_gib"] is None
        assert len(r["reps"]) == 2
        for rep in r["reps"]:  # samples/s and ms/step are the same measurement
            assert rep["samples_per_s"] * rep["ms_per_step"] / 1000 == pytest.approx(8)
            # MFU: the counted FLOPs of the samples run, over the time and the peak
            assert 0 < rep["mfu"] < 1
        lo, hi = r["samples_per_s_spread"]
        assert lo <= r["samples_per_s"] <= hi
        assert lo == min(x["samples_per_s"] for x in r["reps"])
        assert hi == max(x["samples_per_s"] for x in r["reps"])
    fastest = max(r["samples_per_s"] for r in res["rungs"])
    assert res["data_path_vs_fastest_rung"] == pytest.approx(
        res["data_path_samples_per_s"] / fastest)
    assert res["data_path_samples_per_s"] > 0


def test_flops_per_sample_grow_with_the_text_width_and_are_memoised(tiny_synth):
    from emolib.data import BatchIterator
    from emolib.run import experiment

    prof = bench.bench_profile(True)
    exp = experiment(prof, tiny_synth, progress=False)
    prof.model.num_classes = exp.model.num_classes
    model = EmoticonModel(prof.model).train()
    idx = exp.cache.indices("train")[:2]
    sample = BatchIterator(exp.cache, idx, 2, trim=False).batch(idx)
    flops = bench.Flops(model, sample, 0.5)
    short, full = flops(4), flops(prof.model.max_length)
    assert 0 < short < flops(8) < full  # more text tokens, more work
    assert flops.memo == {4: short, 24: full, 8: flops(8)}
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradient
