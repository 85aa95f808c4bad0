import numpy as np
import pytest

from emolib.metrics import classification_metrics, label_metrics, per_class_report


def mcc_by_hand(y, p, k):
    """Gorodkin's multi-class MCC from the confusion matrix, written out."""
    c = np.zeros((k, k))
    for a, b in zip(y, p, strict=True):
        c[a, b] += 1
    t, pk, n, s = c.sum(1), c.sum(0), np.trace(c), c.sum()
    return (n * s - t @ pk) / np.sqrt((s**2 - pk @ pk) * (s**2 - t @ t))


def test_metrics_agree_with_hand_computation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    scores = rng.normal(size=(300, 5))
    scores[np.arange(300), y] += 1.0
    m = classification_metrics(y, scores)
    pred = scores.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["mcc"] == pytest.approx(mcc_by_hand(y, pred, 5))
    top3 = np.argsort(-scores, 1)[:, :3]
    assert m["top3_accuracy"] == pytest.approx(np.mean([y[i] in top3[i] for i in range(300)]))
    f1 = []
    for c in range(5):
        tp = np.sum((pred == c) & (y == c))
        prec, rec = tp / max(1, np.sum(pred == c)), tp / max(1, np.sum(y == c))
        f1.append(0 if tp == 0 else 2 * prec * rec / (prec + rec))
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_report():
    y, p = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    rep = per_class_report(y, p, ["a", "b", "c"])
    assert rep["b"]["recall"] == 0 and rep["c"]["precision"] == pytest.approx(2 / 3)


def test_shape_errors():
    with pytest.raises(ValueError, match="scores must be"):
        classification_metrics(np.array([0, 1]), np.zeros(2))


def test_two_and_three_classes():
    y = np.array([0, 1, 1, 0, 1])
    scores = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 3.0], [0.0, 2.0]])
    m = classification_metrics(y, scores)
    assert m["accuracy"] == pytest.approx(3 / 5) and "top3_accuracy" not in m
    m3 = classification_metrics(np.array([0, 1, 2]), np.eye(3), k=2)
    assert m3["top2_accuracy"] == 1.0 and m3["accuracy"] == 1.0
    with pytest.raises(ValueError, match="C >= 2"):
        classification_metrics(np.array([0, 0]), np.ones((2, 1)))


def test_macro_f1_is_macro_not_weighted():
    """Imbalanced classes: macro-F1 averages classes equally, weighted-F1 would not."""
    y = np.array([0] * 8 + [1, 2])
    p = np.array([0] * 8 + [0, 2])
    m = label_metrics(y, p, 3)
    f1_0, f1_1, f1_2 = 2 * 8 / (2 * 8 + 1), 0.0, 1.0
    assert m["macro_f1"] == pytest.approx((f1_0 + f1_1 + f1_2) / 3)
    assert m["macro_f1"] != pytest.approx((8 * f1_0 + f1_1 + f1_2) / 10)
