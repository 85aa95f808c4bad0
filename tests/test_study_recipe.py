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


@pytest.mark.parametrize("side", [8, 16, 24])  # pad = max(1, side // 8): 1, 2, 3 px
def test_augment_is_a_flip_and_a_reflected_shift_of_at_most_an_eighth(side):
    """Every output is one of the 2 x (2 pad + 1)^2 flips and shifts of its reflect-padded
    input; over 300 images every offset 0..2 pad occurs and about half are flipped."""
    import numpy as np
    import torch

    from emolib.train import augment

    pad = max(1, side // 8)
    images = torch.randint(1, 256, (300, 3, side, side), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(side))
    torch.manual_seed(0)
    out = augment(images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)

    def candidates(img):
        """(flipped, y, x) -> that flip of ``img``, reflect-padded, cropped at (y, x)."""
        for flipped, src in enumerate((img, img.flip(-1))):
            padded = torch.nn.functional.pad(src[None].float(), (pad,) * 4, mode="reflect")
            padded = padded[0].to(img.dtype)
            for y in range(2 * pad + 1):
                for x in range(2 * pad + 1):
                    yield (flipped, y, x), padded[:, y:y + side, x:x + side]

    flips, offsets = [], set()
    for img, res in zip(images, out, strict=True):
        found = [draw for draw, window in candidates(img) if torch.equal(res, window)]
        assert found, "not a flip and a reflected shift within the pad"
        flips.append(found[0][0])
        offsets.update(found[0][1:])
    assert offsets == set(range(2 * pad + 1))
    assert 0.4 < np.mean(flips) < 0.6
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
