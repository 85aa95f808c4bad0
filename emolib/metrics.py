"""Classification metrics, from scikit-learn (no hand-written metric code)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    top_k_accuracy_score,
)


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, k: int = 3
                           ) -> dict[str, float]:
    """Accuracy, multi-class MCC, macro-F1 and top-k accuracy from (N, C) class scores."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(y_true):
        raise ValueError(f"scores must be (N, C) with N = {len(y_true)}; got {scores.shape}")
    y_pred = scores.argmax(1)
    labels = np.arange(scores.shape[1])
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        f"top{k}_accuracy": float(top_k_accuracy_score(y_true, scores, k=min(k, len(labels)),
                                                       labels=labels)),
    }


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1 and support per class (scikit-learn's report as a dict)."""
    return classification_report(y_true, y_pred, labels=np.arange(len(names)),
                                 target_names=names, output_dict=True, zero_division=0)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
              normalize: str | None = None) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(num_classes), normalize=normalize)
