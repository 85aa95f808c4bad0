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
    # one row per class and per average, each a full row: a table of it has no odd row
    assert list(rep) == ["a", "b", "c", "macro avg", "weighted avg"]
    assert all(set(row) == {"precision", "recall", "f1-score", "support"}
               for row in rep.values())
    assert rep["weighted avg"]["support"] == len(y)
    # a prediction outside the named classes: scikit-learn adds "micro avg", not accuracy
    rep = per_class_report(np.array([0, 1, 1]), np.array([0, 3, 1]), ["a", "b"])
    assert list(rep) == ["a", "b", "macro avg", "weighted avg"]


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


def test_macro_f1_counts_a_class_missing_from_the_split_as_zero_and_stays_quiet():
    """A small validation split may lack a class: macro-F1 is over all classes (the
    absent one scores 0, documented), and no warning is printed every epoch."""
    import warnings

    y = np.array([0, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = label_metrics(y, y, 3)
        rep = per_class_report(y, np.array([0, 0, 0, 1]), ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx(2 / 3) and m["accuracy"] == 1.0
    assert m["mcc"] == pytest.approx(1.0)
    assert list(rep)[:3] == ["a", "b", "c"]  # every class named, even the absent one
    assert rep["c"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}
    assert rep["b"]["recall"] == 0.5 and rep["b"]["precision"] == 1.0


def test_top_k_with_a_class_missing_from_the_split():
    y = np.array([0, 0, 1, 1])  # class 2 never appears
    scores = np.array([[0.1, 0.5, 0.4], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    m = classification_metrics(y, scores, k=2)
    # top-2 of each row: {1,2} miss, {0,1} hit, {0,1} hit, {2,1} hit
    assert m["top2_accuracy"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(1 / 4)


def test_top_k_only_below_the_class_count_and_top1_is_accuracy():
    y, scores = np.array([0, 1, 2, 1]), np.eye(3)[[0, 2, 2, 1]] + 0.1
    assert "top3_accuracy" not in classification_metrics(y, scores, k=3)  # always 1
    m = classification_metrics(y, scores, k=1)
    assert m["top1_accuracy"] == m["accuracy"] == pytest.approx(3 / 4)
    binary = classification_metrics(np.array([0, 1, 1, 1]), np.array(
        [[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [-3.0, -1.0]]), k=1)  # logits of any sign
    assert binary["top1_accuracy"] == binary["accuracy"] == pytest.approx(3 / 4)


def test_mismatched_labels_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"must be \(N,\) each; got \(3,\) and \(2,\)"):
        label_metrics(np.array([0, 1, 1]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match=r"must be \(N,\) each; got \(2, 1\) and \(2, 1\)"):
        label_metrics(np.zeros((2, 1), int), np.zeros((2, 1), int), 2)
    with pytest.raises(ValueError, match=r"scores must be \(N, C\) with N = 3"):
        classification_metrics(np.array([0, 1, 1]), np.zeros((2, 3)))
