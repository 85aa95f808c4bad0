import math

import numpy as np
import pytest
import torch

from emolib.retrieval import (
    chance_class_recall_at_k,
    chance_recall_at_k,
    class_prototypes,
    class_recall_at_k,
    cosine_similarity,
    embed_split,
    embed_texts,
    modality_gap,
    positive_ranks,
    recall_at_k,
    zero_shot_scores,
)


def brute_recall(sim, k):
    hits = 0
    for i, row in enumerate(sim):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits += i in order[:k]
    return hits / len(sim)


def brute_class_recall(sim, qy, gy, k):
    hits = 0
    for i, row in enumerate(sim):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits += any(gy[j] == qy[i] for j in order[:k])
    return hits / len(sim)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_at_k_matches_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    sim = cosine_similarity(rng.normal(size=(40, 8)), rng.normal(size=(40, 8)))
    for k in (1, 3, 5, 10, 40, 50):
        assert recall_at_k(sim, k) == pytest.approx(brute_recall(sim, k))


@pytest.mark.parametrize("seed", [0, 1])
def test_class_recall_matches_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    sim = rng.normal(size=(30, 45))
    qy, gy = rng.integers(0, 5, 30), rng.integers(0, 5, 45)
    for k in (1, 2, 5, 45, 60):
        assert class_recall_at_k(sim, qy, gy, k) == pytest.approx(
            brute_class_recall(sim, qy, gy, k))


def test_perfect_alignment_gives_recall_one():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(25, 16))
    sim = cosine_similarity(emb, emb)
    assert recall_at_k(sim, 1) == 1.0
    assert (positive_ranks(sim) == 0).all()
    labels = np.arange(25) % 4
    assert class_recall_at_k(sim, labels, labels, 1) == 1.0
    assert modality_gap(emb, emb) == pytest.approx(0.0, abs=1e-12)


def test_recall_is_monotone_in_k_and_reaches_one():
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(20, 20))
    values = [recall_at_k(sim, k) for k in range(1, 21)]
    assert values == sorted(values) and values[-1] == 1.0


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="square"):
        recall_at_k(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        recall_at_k(np.zeros((3, 3)), 0)
    with pytest.raises(ValueError, match=r"len\(query_labels\)"):
        class_recall_at_k(np.zeros((3, 4)), np.zeros(3), np.zeros(3), 1)
    with pytest.raises(ValueError, match="same D"):
        cosine_similarity(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="N = len"):
        class_prototypes(np.zeros((3, 4)), np.zeros(2), 2)


def test_chance_levels():
    assert chance_recall_at_k(100, 5) == 0.05
    assert chance_recall_at_k(4, 10) == 1.0
    # one class of 3 among 10: P(miss in top 2) = C(7,2)/C(10,2)
    gy = np.array([0] * 3 + [1] * 7)
    expected = 1 - math.comb(7, 2) / math.comb(10, 2)
    assert chance_class_recall_at_k(np.array([0]), gy, 2) == pytest.approx(expected)
    # Monte Carlo agrees with the exact value
    rng = np.random.default_rng(0)
    qy = rng.integers(0, 3, 200)
    gy = rng.integers(0, 3, 50)
    mc = np.mean([class_recall_at_k(rng.random((200, 50)), qy, gy, 4) for _ in range(40)])
    assert mc == pytest.approx(chance_class_recall_at_k(qy, gy, 4), abs=0.02)


def test_prototypes_and_zero_shot_on_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 6) * 5
    labels = rng.integers(0, 3, 90)  # class 3 absent: zero prototype
    emb = centres[labels] + rng.normal(scale=0.3, size=(90, 6))
    protos = class_prototypes(emb, labels, 4)
    assert protos.shape == (4, 6)
    assert np.allclose(np.linalg.norm(protos[:3], axis=1), 1) and not protos[3].any()
    scores = zero_shot_scores(emb, protos)
    assert scores.shape == (90, 4)
    assert (scores.argmax(1) == labels).all()


def test_embed_split_and_embed_texts_on_a_tiny_model(tiny_synth):
    from emolib.model import EmoticonModel
    from emolib.run import experiment

    exp = experiment("smoke", tiny_synth, progress=False)
    model_cfg, info, pre, cache = exp.model, exp.data, exp.pre, exp.cache
    torch.manual_seed(0)
    model = EmoticonModel(model_cfg).eval()
    emb = embed_split(model, cache, "test", batch_size=7)
    n = int((cache.splits == "test").sum())
    assert emb.text.shape == emb.image.shape == (n, model_cfg.embed_dim)
    assert emb.logits.shape == (n, info.num_classes) and emb.labels.shape == (n,)
    assert np.allclose(np.linalg.norm(emb.text, axis=1), 1, atol=1e-5)
    names = [lab.name for lab in info.labels]
    vecs = embed_texts(model, pre, names, batch_size=3)
    assert vecs.shape == (len(names), model_cfg.embed_dim)
    again = embed_texts(model, pre, names[:2])
    assert np.allclose(vecs[:2], again, atol=1e-5)  # batching does not change the result
    model_cfg.mode = "text"
    with pytest.raises(ValueError, match="both branches"):
        embed_split(EmoticonModel(model_cfg), cache, "test")
