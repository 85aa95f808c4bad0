"""Classification metrics, from scikit-learn (no hand-written metric code)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    matthews_corrcoef,
    top_k_accuracy_score,
)


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
                  ) -> dict[str, float]:
    """Accuracy, multi-class MCC (Gorodkin 2004) and macro-F1 from hard predictions.

    Macro-F1 averages over all ``num_classes`` classes; a class absent from both labels
    and predictions counts as F1 = 0 (``zero_division=0``), so on a split that lacks a
    class the score is lower than scikit-learn's default over the classes present.
    MCC of a constant predictor is 0/0; scikit-learn returns 0 by convention.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be (N,) each; got {y_true.shape} "
                         f"and {y_pred.shape}")
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=np.arange(num_classes),
                                       average="macro", zero_division=0))}


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, k: int = 3
                           ) -> dict[str, float]:
    """:func:`label_metrics` of the argmax, plus top-k accuracy where k < the class count."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(y_true) or scores.shape[1] < 2:
        raise ValueError(f"scores must be (N, C) with N = {len(y_true)} and C >= 2; "
                         f"got {scores.shape}")
    num_classes = scores.shape[1]
    out = label_metrics(y_true, scores.argmax(1), num_classes)
    if k < num_classes:  # two classes: scikit-learn wants P(class 1), thresholded at 0.5
        out[f"top{k}_accuracy"] = float(top_k_accuracy_score(
            y_true, scores if num_classes > 2 else expit(scores[:, 1] - scores[:, 0]), k=k,
            labels=np.arange(num_classes)))
    return out


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1 and support per class, then their macro and weighted
    averages: scikit-learn's report as a dict of rows, without its one scalar entry
    (accuracy, which :func:`label_metrics` gives) that a table would show as a row."""
    report = classification_report(y_true, y_pred, labels=np.arange(len(names)),
                                   target_names=names, output_dict=True, zero_division=0)
    report.pop("accuracy", None)
    report.pop("micro avg", None)  # = accuracy when every prediction is one of the labels
    return report
