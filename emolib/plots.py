"""Figures the book shows: one function per kind of picture, matplotlib only."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image


def post_grid(root, frame: pd.DataFrame, labels, n: int = 8, cols: int = 4):
    """Sample posts: image, label emoji name and the (wrapped) tweet."""
    import textwrap

    rows = frame.head(n)
    fig, axes = plt.subplots(int(np.ceil(len(rows) / cols)), cols,
                             figsize=(3.2 * cols, 3.6 * np.ceil(len(rows) / cols)))
    for ax, (_, row) in zip(np.ravel(axes), rows.iterrows(), strict=False):
        ax.imshow(Image.open(root / "images" / row["image"]))
        name = labels[int(row["y"])].name
        ax.set_title(f"{name}\n" + "\n".join(textwrap.wrap(row["text"], 30)[:3]), fontsize=8)
        ax.axis("off")
    for ax in np.ravel(axes)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def history(frame: pd.DataFrame, ceiling: float | None = None):
    """Training loss and validation accuracy/MCC per epoch."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(frame["epoch"], frame["train_loss"], "o-", label="total")
    a.plot(frame["epoch"], frame["train_ce"], "s--", label="cross-entropy")
    if frame["train_contrastive"].abs().sum() > 0:
        a.plot(frame["epoch"], frame["train_contrastive"], "^:", label="InfoNCE")
    a.set(xlabel="epoch", ylabel="training loss", title="loss")
    a.legend()
    b.plot(frame["epoch"], frame["val_accuracy"], "o-", label="val accuracy")
    b.plot(frame["epoch"], frame["val_mcc"], "s--", label="val MCC")
    if ceiling is not None:
        b.axhline(ceiling, color="gray", ls=":", label=f"Bayes ceiling {ceiling:.3f}")
    b.set(xlabel="epoch", ylim=(0, 1), title="validation")
    b.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: np.ndarray, names: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix with the counts' shares written in."""
    m = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if m[i, j] >= 0.01:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def similarity(sim: np.ndarray, title: str = "cosine similarity, text i vs image j"):
    """A text-by-image similarity matrix: positives on the diagonal."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set(xlabel="image j", ylabel="text i", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def fusion_weights(weights: np.ndarray, y: np.ndarray, names: Sequence[str],
                   tokens: Sequence[str] = ("text", "image", "text×image")):
    """Mean attention weight per modality token, per true class (averaged over heads)."""
    w = weights.mean(1)  # (N, tokens)
    per_class = np.stack([w[y == c].mean(0) if np.any(y == c) else np.zeros(w.shape[1])
                          for c in range(len(names))])
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 3.2))
    bottom = np.zeros(len(names))
    for k, tok in enumerate(tokens):
        ax.bar(range(len(names)), per_class[:, k], bottom=bottom, label=tok)
        bottom += per_class[:, k]
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="attention weight", ylim=(0, 1), title="what the fusion attends to")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def results_bars(table: pd.DataFrame, ceilings: dict[str, float] | None = None,
                 metric: str = "accuracy"):
    """One bar per model, with the EmoSynth ceilings as lines."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(table.index, table[metric], color="tab:blue")
    for i, v in enumerate(table[metric]):
        ax.text(v + 0.01, i, f"{v:.3f}", va="center", fontsize=8)
    for key, style in (("joint", "-"), ("text", "--")):
        if ceilings and key in ceilings:
            label = "joint ceiling" if key == "joint" else "single-modality ceiling"
            ax.axvline(ceilings[key], color="gray", ls=style, label=label)
    ax.set(xlim=(0, 1.08), xlabel=f"test {metric}")
    ax.invert_yaxis()
    if ceilings:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def embedding_scatter(points: np.ndarray, classes: np.ndarray, modality: np.ndarray,
                      names: Sequence[str], title: str = "UMAP of the shared space"):
    """2-D embedding coloured by class, marker by modality (o text, x image)."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for c, name in enumerate(names):
        for mod, marker in (("text", "o"), ("image", "x")):
            sel = (classes == c) & (modality == mod)
            ax.scatter(points[sel, 0], points[sel, 1], s=9, marker=marker, color=cmap(c),
                       alpha=0.6, label=name if mod == "text" else None)
    ax.set(title=title + "  (o text, x image)", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    return fig
