import hashlib

import numpy as np
import pytest

from emolib.layout import read_labels, read_metadata
from emolib.prepare.emosynth import generate
from emolib.synth import (
    SynthConfig,
    bayes_predict,
    ceilings,
    image_group,
    make_text,
    sample_latents,
    text_group,
)


def test_ceilings_meet_the_design_targets():
    c = ceilings(8, 0.05)
    assert c["text"] <= 0.70 and c["image"] <= 0.70 and c["joint"] >= 0.95
    assert c["joint"] - max(c["text"], c["image"]) > 0.4


def test_every_text_pair_and_image_pair_share_exactly_one_class():
    for k in (4, 8, 16):
        classes = np.arange(k)
        for tg in range(k // 2):
            for ig in range(k // 2):
                shared = classes[(text_group(classes, k) == tg) & (image_group(classes, k) == ig)]
                assert len(shared) <= 1
        # each class is identified by its pair of groups
        pairs = set(zip(text_group(classes, k), image_group(classes, k), strict=True))
        assert len(pairs) == k


@pytest.mark.parametrize("k, noise", [(8, 0.05), (4, 0.2), (16, 0.0)])
def test_analytic_ceilings_match_the_exact_bayes_classifier(k, noise):
    lat = sample_latents(SynthConfig(size=40_000, classes=k, noise=noise, seed=7))
    y, tg, ig = lat["y"].to_numpy(), lat["text_group"].to_numpy(), lat["image_group"].to_numpy()
    expected = ceilings(k, noise)
    empirical = {"text": (bayes_predict(tg, None, k) == y).mean(),
                 "image": (bayes_predict(None, ig, k) == y).mean(),
                 "joint": (bayes_predict(tg, ig, k) == y).mean()}
    for key, value in empirical.items():
        se = np.sqrt(expected[key] * (1 - expected[key]) / len(y))
        assert abs(value - expected[key]) < 4 * se + 1e-9, (key, value, expected[key])


def test_bad_configs_are_refused():
    for cfg in (SynthConfig(classes=7), SynthConfig(classes=2), SynthConfig(noise=1.0),
                SynthConfig(size=3)):
        with pytest.raises(ValueError):
            cfg.check()


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_valid_layout(tmp_path):
    cfg = SynthConfig(size=40, image_size=32, seed=5)
    a, b = generate(tmp_path / "a", cfg, progress=False), generate(tmp_path / "b", cfg, False)
    assert _digest(a) == _digest(b)
    c = generate(tmp_path / "c", SynthConfig(size=40, image_size=32, seed=6), progress=False)
    assert _digest(a) != _digest(c)
    labels = read_labels(a / "labels.json")
    meta = read_metadata(a / "metadata.csv", labels)
    assert len(meta) == 40 and set(meta["split"]) <= {"train", "val", "test"}
    assert (a / ".complete").is_file() and not (tmp_path / ".a.partial").exists()


def test_workers_draw_the_same_files(tmp_path):
    cfg = SynthConfig(size=80, image_size=32, seed=2)
    one = generate(tmp_path / "one", cfg, progress=False, workers=1)
    two = generate(tmp_path / "two", cfg, progress=False, workers=2)
    assert _digest(one) == _digest(two)
    assert len(list((two / "images").iterdir())) == 80


def test_texts_read_like_tweets_and_carry_only_their_cue():
    rng = np.random.default_rng(0)
    texts = [make_text(0, rng) for _ in range(300)]
    assert any(t.startswith("@") for t in texts)
    assert any("#" in t for t in texts) and any("https://t.co/" in t for t in texts)
    from emolib.synth import TEXT_CUES

    for t in texts:
        assert any(cue in t.lower() for cue in TEXT_CUES[0])
        assert not any(cue in t.lower() for g in TEXT_CUES[1:] for cue in g if len(cue) > 5)


@pytest.mark.parametrize("splits", [(0.8, 0.1, 0.1), (0.6, 0.15, 0.25), (0.5, 0.35, 0.15),
                                    (0.7, 0.0, 0.3)])
def test_split_sizes_follow_asymmetric_fractions(splits):
    lat = sample_latents(SynthConfig(size=200, splits=splits, seed=2))
    counts = lat["split"].value_counts().to_dict()
    want = {"train": round(200 * splits[0]), "val": round(200 * splits[1])}
    want["test"] = 200 - want["train"] - want["val"]
    assert {k: counts.get(k, 0) for k in want} == want
    first = lat["split"].iloc[:100]  # shuffled, not in blocks
    assert first.nunique() == sum(1 for v in want.values() if v)
