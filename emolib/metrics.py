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


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
                  ) -> dict[str, float]:
    """Accuracy, multi-class MCC and macro-F1 from hard predictions (no scores needed)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be (N,) each; got {y_true.shape} "
                         f"and {y_pred.shape}")
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=np.arange(num_classes),
                                       average="macro", zero_division=0))}


def emosynth_reference(data_dir, split: str = "test") -> dict[str, dict[str, float]]:
    """The Bayes classifier of EmoSynth, measured on one split of a generated dataset.

    It reads the hidden cues of each post from ``latents.csv`` (which a model never sees)
    and predicts with :func:`emolib.synth.bayes_predict` from the text cue, the image cue,
    or both. Returns ``{"text": metrics, "image": metrics, "joint": metrics}``, the
    best any model can expect on exactly these posts (up to the luck of the label noise).
    """
    import json
    from pathlib import Path

    import pandas as pd

    from emolib.synth import bayes_predict

    data_dir = Path(data_dir)
    if not (data_dir / "latents.csv").is_file():
        raise FileNotFoundError(f"{data_dir}/latents.csv not found: emosynth_reference needs "
                                "an EmoSynth dataset (./data_download.sh synthetic)")
    classes = json.loads((data_dir / "emosynth.json").read_text())["config"]["classes"]
    lat = pd.read_csv(data_dir / "latents.csv")
    lat = lat[lat["split"] == split]
    if lat.empty:
        raise ValueError(f"split {split!r} has no posts in {data_dir}/latents.csv")
    tg, ig, y = lat["text_group"].to_numpy(), lat["image_group"].to_numpy(), lat["y"].to_numpy()
    preds = {"text": bayes_predict(tg, None, classes), "image": bayes_predict(None, ig, classes),
             "joint": bayes_predict(tg, ig, classes)}
    return {name: label_metrics(y, p, classes) for name, p in preds.items()}
