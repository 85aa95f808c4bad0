"""The study runner (benchmarks/study.py, its --quick grid) and its statistics
(benchmarks/study_stats.py)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["experiment", "variant", "seed", "label_fraction", "classes", "noise", "size",
           "data_seed", "epochs", "test_accuracy", "test_mcc", "test_macro_f1", "bayes_joint",
           "bayes_single", "bayes_joint_test", "ceiling_test", "gap_test", "wall_s",
           "device", "torch", "recipe", "clean_accuracy", "text_pair_accuracy",
           "image_pair_accuracy"]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


study = _load("study")
st = _load("study_stats")


# --- the runner ----------------------------------------------------------------------------

def _quick(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study.py"), "--quick",
                           "--root", str(tmp_path), "--csv", str(tmp_path / "study.csv")],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def test_quick_grid_writes_the_csv_and_a_second_call_skips_finished_runs(tmp_path):
    first = _quick(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "study.csv")
    cells = study.expand(study.QUICK_GRID, profile="smoke", image_size=32)
    assert len(frame) == len(cells) >= 3
    assert set(COLUMNS) <= set(frame.columns), set(COLUMNS) - set(frame.columns)
    assert frame["test_accuracy"].between(0, 1).all()
    assert (frame["gap_test"] - (frame["ceiling_test"] - frame["test_accuracy"])).abs().max() \
        < 1e-5
    assert (frame["bayes_joint"] == 1.0).all() and (frame["bayes_single"] == 0.5).all()
    assert set(frame["mode"]) == {"both", "text"}
    # noise 0: every label is the true class, so accuracy against either is one number
    assert (frame["noise"] == 0).all()
    assert (frame["clean_accuracy"] - frame["test_accuracy"]).abs().max() < 1e-6
    # a class is the one shared member of its text pair and its image pair: a prediction
    # is right exactly when both of its pairs are, so P(right) sits between these bounds
    tp, ip, clean = frame["text_pair_accuracy"], frame["image_pair_accuracy"], \
        frame["clean_accuracy"]
    assert (clean <= np.minimum(tp, ip) + 1e-9).all() and (clean >= tp + ip - 1 - 1e-9).all()
    runs = sorted((tmp_path / "runs" / "study").glob("*/*/test_metrics.json"))
    assert len(runs) == len(cells)
    stamps = {p: p.stat().st_mtime_ns for p in runs}

    second = _quick(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps, "a finished run ran again"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "study.csv"), frame)

    # the CSV lost, the run folders kept: the rows come back from test_metrics.json
    (tmp_path / "study.csv").unlink()
    third = _quick(tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "study.csv"), frame)


def test_the_grid_fills_every_cell_the_issue_asks_for():
    cells = study.expand(study.GRID)
    frame = pd.DataFrame([{k: getattr(c, k) for k in study.KEY} for c in cells])
    assert not frame.duplicated().any()
    abl = frame[frame["experiment"] == "ablation"]
    assert set(abl["variant"]) == {"full", "concat", "lambda0", "text_only", "image_only"}
    assert abl.groupby("variant")["seed"].nunique().min() >= 3
    eff = frame[frame["experiment"] == "label_efficiency"]
    assert set(eff["label_fraction"]) == {0.05, 0.2, 1.0}
    assert eff.groupby(["variant", "label_fraction"])["seed"].nunique().min() >= 3
    rob = frame[(frame["experiment"] == "robustness") & (frame["variant"] == "full")]
    settings = rob[["classes", "noise", "size"]].drop_duplicates()
    assert len(settings) == 12


def test_run_folders_follow_the_configuration():
    cells = study.expand(study.GRID)
    full = next(c for c in cells if c.experiment == "ablation" and c.variant == "full")
    same = next(c for c in cells if c.experiment == "label_efficiency" and c.variant == "full"
                and c.label_fraction == 1.0 and c.seed == full.seed)
    assert study.run_name(full) == study.run_name(same), "one run serves both experiments"
    names = {(c.data_name, study.run_name(c)) for c in cells}
    distinct = {(c.data_name, c.variant, c.seed, c.label_fraction) for c in cells}
    assert len(names) == len(distinct)
    changed = study.Cell(**{**full.__dict__, "overrides": {"lr": 1e-4}})
    assert study.run_name(changed) != study.run_name(full)
    assert study.recipe_hash(changed) != study.recipe_hash(full)
    assert len({study.recipe_hash(c) for c in cells}) == 1, "one recipe for the whole grid"


def test_an_opt_in_option_renames_no_run_while_off():
    """Adding a training option must not orphan the finished runs: off, it is left out
    of the configuration; on, it names new folders. The committed rows name the folders
    and recipe that today's code computes."""
    cells = study.expand(study.GRID)
    full = cells[0]
    assert all(k not in study.effective_config(full)["train"] for k in study.OPT_IN)
    on = study.Cell(**{**full.__dict__, "overrides": {"augment": True}})
    assert study.effective_config(on)["train"]["augment"] is True
    assert study.run_name(on) != study.run_name(full)
    assert study.recipe_hash(on) != study.recipe_hash(full)
    by_key = {c.key(): c for c in cells}
    for rec in pd.read_csv(study.CSV).to_dict("records"):
        cell = by_key[tuple(rec[k] for k in study.KEY)]
        assert rec["recipe"] == study.recipe_hash(cell)
        assert rec["run"].endswith(f"{cell.data_name}/{study.run_name(cell)}")


def test_seeds_replace_every_lines_seeds():
    grid = study.expand(study.GRID)
    two = study.expand(study.GRID, seeds=(0, 1))
    assert {c.seed for c in two} == {0, 1}
    settings = {c.key()[:2] + c.key()[3:] for c in grid}
    assert {c.key()[:2] + c.key()[3:] for c in two} == settings
    assert len(two) == 2 * len(settings)
    assert study.expand(study.GRID, seeds=None) == grid


def test_steps_per_epoch_matches_the_trainer():
    assert study.steps_per_epoch(4800, 64) == 75
    assert study.steps_per_epoch(1600, 64) == 25
    assert study.steps_per_epoch(96, 64) == 2  # fewer than two batches: the last is kept


# --- the statistics --------------------------------------------------------------------------

def test_mean_ci_is_the_student_t_interval():
    x = [0.91, 0.93, 0.92, 0.95, 0.90]
    ci = st.mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert ci.mean == pytest.approx(np.mean(x))
    assert (ci.low, ci.high) == (pytest.approx(lo), pytest.approx(hi))
    assert ci.n == 5 and ci.half_width == pytest.approx((hi - lo) / 2)
    three = st.mean_ci([1.0, 2.0, 3.0])  # t(0.975, 2) = 4.303, s = 1, n = 3
    assert three.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_mean_ci_of_one_value_has_no_interval():
    ci = st.mean_ci([0.5, float("nan")])
    assert ci.mean == 0.5 and ci.n == 1 and math.isnan(ci.low)
    assert "no interval" in str(ci)
    assert st.verdict(ci) == "not separated"
    with pytest.raises(ValueError):
        st.mean_ci([])


def test_paired_difference_uses_the_same_seeds():
    frame = pd.DataFrame({
        "variant": ["a"] * 4 + ["b"] * 3,
        "seed": [0, 1, 2, 3, 0, 1, 2],
        "acc": [0.90, 0.80, 0.70, 0.99, 0.89, 0.788, 0.689],
    })
    diff, pairs = st.paired(frame, "acc", {"variant": "a"}, {"variant": "b"})
    assert list(pairs.index) == [0, 1, 2]  # seed 3 has no partner
    assert diff.n == 3 and diff.mean == pytest.approx(0.011)
    # the seeds' large spread cancels in the pairs: separated, though the groups overlap
    assert st.verdict(diff, "a", "b") == "a better"
    a, b = st.mean_ci(frame.acc[:3]), st.mean_ci(frame.acc[4:])
    assert a.contains(b.mean) and b.contains(a.mean)
    with pytest.raises(ValueError, match="more than one row"):
        st.paired(pd.concat([frame, frame]), "acc", {"variant": "a"}, {"variant": "b"})


def test_a_difference_whose_interval_holds_zero_is_not_separated():
    diff = st.mean_ci([0.01, -0.02, 0.015])
    assert diff.contains(0.0)
    assert st.verdict(diff, "a", "b") == "not separated"
    assert st.verdict(st.mean_ci([-0.03, -0.02, -0.025]), "a", "b") == "b better"


def test_summary_per_group():
    frame = pd.DataFrame({"v": ["x", "x", "y", "y", "y"], "acc": [1, 3, 2, 2, 2.0]})
    out = st.summary(frame, ["v"], "acc")
    assert list(out["v"]) == ["x", "y"] and list(out["n"]) == [2, 3]
    assert out.loc[1, "half_width"] == 0.0 and out.loc[0, "mean"] == 2.0
