"""The recipe the study settled on: a schedule that stretches short epochs
(``TrainConfig.min_epoch_steps``, ``emolib.train.schedule``) and augmented training images
(``TrainConfig.augment``, ``emolib.train.augment``)."""

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


def test_augment_flips_and_shifts_each_image_within_its_own_pixels():
    import torch

    from emolib.train import augment

    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    out = augment(images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    # a flip and a shift of at most 2 px (16 / 8): the centre 12 x 12 of the result is a
    # window of the image or of its mirror
    for img, res in zip(images, out, strict=True):
        windows = [src[:, y:y + 12, x:x + 12] for src in (img, img.flip(-1))
                   for y in range(5) for x in range(5)]
        assert any(torch.equal(res[:, 2:14, 2:14], w) for w in windows)
    torch.manual_seed(0)
    assert torch.equal(augment(images), out), "the same seed, the same draws"


class Interrupted(Exception):
    pass


def test_an_interrupted_run_with_augment_and_a_stretched_schedule_resumes_exactly(
        tiny_synth, tmp_path, monkeypatch):
    import pandas as pd
    import torch

    import emolib.train as T

    kw = dict(progress=False, epochs=2, batch_size=32, augment=True, min_epoch_steps=8,
              patience=50, seed=2)
    whole = train("smoke", tiny_synth, tmp_path / "whole", **kw)
    save = T.save_checkpoint

    def dying_save(state, path):
        save(state, path)
        if state["epoch"] == 2:
            raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(T, "save_checkpoint", dying_save)
        with pytest.raises(Interrupted):
            train("smoke", tiny_synth, tmp_path / "part", **kw)
    resumed = train("smoke", tiny_synth, tmp_path / "part", **kw)
    # 128 training posts in batches of 32: 4 steps per epoch; at least 8 per epoch doubles
    # the 2 epochs, and the learning rate ends its cosine at the last step
    assert whole.fit.epochs == 4 and len(whole.history) == len(resumed.history) == 4
    assert whole.history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
    a = T.load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = T.load_checkpoint(tmp_path / "part" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    train("smoke", tiny_synth, tmp_path / "plain", **{**kw, "augment": False})
    c = T.load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a), "augment changes what is learnt"
    timing = ["epoch_seconds", "samples_per_second"]
    pd.testing.assert_frame_equal(whole.history.drop(columns=timing),
                                  resumed.history.drop(columns=timing))
