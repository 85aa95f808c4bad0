"""The recipe the study settled on: a schedule that stretches short epochs
(``TrainConfig.min_epoch_steps``, ``emolib.train.schedule``)."""

import math

import pytest

from emolib.config import TrainConfig, get_profile
from emolib.run import train
from emolib.train import schedule


def test_a_long_enough_epoch_keeps_the_configured_schedule():
    cfg = TrainConfig(epochs=8, patience=3, min_epoch_steps=75)
    assert schedule(cfg, 75) == (8, 3)
    assert schedule(cfg, 300) == (8, 3)
    assert schedule(TrainConfig(epochs=8, patience=3), 1) == (8, 3), "0: off"


def test_a_short_epoch_stretches_epochs_and_patience_alike():
    cfg = TrainConfig(epochs=8, patience=3, min_epoch_steps=75)
    assert schedule(cfg, 25) == (24, 9)        # 2,000 posts: 1,600 to train on
    epochs, patience = schedule(cfg, 31)
    assert epochs * 31 >= 8 * 75 > (epochs - 1) * 31
    assert patience == math.ceil(3 * 75 / 31)
    assert schedule(TrainConfig(epochs=3, patience=3, min_epoch_steps=75), 25) == (9, 9)
    assert schedule(cfg, 1) == (600, 225)  # one batch an epoch: 600 epochs of one step
    assert schedule(cfg, 74) == (9, 4) and schedule(cfg, 75) == (8, 3)  # the boundary


def test_the_cpu_recipe_keeps_the_default_emosynth_schedule():
    """The default EmoSynth: 4,800 training posts in batches of 64 = 75 steps: 8 epochs."""
    cfg = get_profile("cpu").train
    assert cfg.min_epoch_steps == 4800 // cfg.batch_size
    assert schedule(cfg, 4800 // cfg.batch_size) == (cfg.epochs, cfg.patience)
    assert get_profile("smoke").train.min_epoch_steps == 0


def test_fit_runs_the_stretched_schedule(tiny_synth, tmp_path):
    """128 training posts in batches of 32: 4 steps per epoch; at least 8 per epoch
    doubles the 2 epochs, and the learning rate ends its cosine at the last step."""
    res = train("smoke", tiny_synth, tmp_path / "run", progress=False, epochs=2,
                batch_size=32, min_epoch_steps=8, patience=50, seed=1)
    assert res.fit.epochs == 4 and len(res.history) == 4
    assert res.history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
    assert res.history["lr"].iloc[1] > 0
    again = train("smoke", tiny_synth, tmp_path / "run", progress=False, epochs=2,
                  batch_size=32, min_epoch_steps=8, patience=50, seed=1)
    assert len(again.history) == 4, "resume reads the same schedule"
