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
    top = max(frame[c].max() for c in ("train_loss", "train_ce", "train_contrastive"))
    a.set(xlabel="epoch", ylabel="training loss", title="loss", ylim=(0, 1.35 * top))
    a.legend(fontsize=8, ncol=3, loc="upper center", frameon=False)  # above the curves
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
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(names), 3.6))
    bottom = np.zeros(len(names))
    for k, tok in enumerate(tokens):
        ax.bar(range(len(names)), per_class[:, k], bottom=bottom, label=tok)
        bottom += per_class[:, k]
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    # the stacks reach 1: the legend gets the band above them, never a bar
    ax.set(ylabel="attention weight", ylim=(0, 1.3), yticks=np.linspace(0, 1, 6),
           title="what the fusion attends to")
    ax.legend(fontsize=8, loc="upper center", ncol=len(tokens), frameon=False)
    fig.tight_layout()
    return fig


def results_bars(table: pd.DataFrame, ceilings: dict[str, float] | None = None,
                 metric: str = "accuracy"):
    """One bar per model, with the EmoSynth ceilings (analytic, :func:`synth.ceilings`:
    the average over test splits; one split's Bayes accuracy differs a little) as lines."""
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.38 * len(table)))
    ax.barh(table.index, table[metric], color="tab:blue")
    for i, v in enumerate(table[metric]):  # on white: readable over a ceiling line
        ax.text(v + 0.01, i, f"{v:.3f}", va="center", fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    for key, style in (("joint", "-"), ("text", "--")):
        if ceilings and key in ceilings:
            name = "joint" if key == "joint" else "single-modality"
            ax.axvline(ceilings[key], color="gray", ls=style,
                       label=f"{name} ceiling {ceilings[key]:.3f} (analytic)")
    ax.set(xlim=(0, 1.08), xlabel=f"test {metric}")
    ax.invert_yaxis()
    if ceilings:  # below the axis: no bar or value label is covered
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2,
                  frameon=False)
    fig.tight_layout()
    return fig


def embedding_scatter(points: np.ndarray, classes: np.ndarray, modality: np.ndarray,
                      names: Sequence[str], title: str = "UMAP of the shared space"):
    """2-D embedding coloured by class, marker by modality (o text, x image)."""
    fig, ax = plt.subplots(figsize=(8.5, 5))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for c, name in enumerate(names):
        for mod, marker in (("text", "o"), ("image", "x")):
            sel = (classes == c) & (modality == mod)
            ax.scatter(points[sel, 0], points[sel, 1], s=9, marker=marker, color=cmap(c),
                       alpha=0.6, label=name if mod == "text" else None)
    ax.set(title=title + "  (o text, x image)", xticks=[], yticks=[])
    # beside the map, not on it: any corner may hold a cluster
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)
    fig.tight_layout()
    return fig


def curves(x: np.ndarray, ys: dict[str, np.ndarray], refs: dict[str, float] | None = None,
           xlabel: str = "", ylabel: str = "", title: str = "",
           ylim: tuple[float, float] | None = None, logx: bool = False):
    """Several curves over a shared x, with named horizontal reference lines (ceilings, chance)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, y in ys.items():
        ax.plot(x, y, label=name)
    for k, (name, value) in enumerate((refs or {}).items()):
        ax.axhline(value, color="gray", ls=("--", ":", "-.", (0, (1, 3)))[k % 4], lw=1,
                   label=f"{name} ({value:.3g})")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapters 00-04
def architecture_diagram(profile_note: str = ""):
    """The model as boxes and arrows: two encoders, projections, InfoNCE, fusion, classifier."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 4.6))
    ax.set(xlim=(0, 12), ylim=(0, 4.6))
    ax.axis("off")
    colours = {"in": "#f2f2f2", "text": "#d6e6f5", "image": "#fde0c5", "shared": "#dff0d8",
               "loss": "#f8d7da"}

    def box(x, y, w, h, label, kind, note=""):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04",
                                    fc=colours[kind], ec="0.35", lw=1))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.5)
        if note:
            ax.text(x + w / 2, y - 0.12, note, ha="center", va="top", fontsize=7,
                    color="0.35", style="italic")
        return (x, y, w, h)

    def arrow(a, b, style="-|>", ls="-", colour="0.25", rad=0.0):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=11, lw=1.1,
                                     ls=ls, color=colour, connectionstyle=f"arc3,rad={rad}"))

    text_in = box(0.1, 3.3, 1.5, 0.8, "tweet text\n(normalised)", "in", "ch. 01")
    image_in = box(0.1, 0.5, 1.5, 0.8, "image\n(S×S pixels)", "in", "ch. 01")
    text_enc = box(2.1, 3.3, 2.0, 0.8, "text transformer\n+ pooling", "text", "ch. 02")
    image_enc = box(2.1, 0.5, 2.0, 0.8, "image transformer (ViT)\n+ pooling", "image", "ch. 03")
    text_proj = box(4.6, 3.3, 1.7, 0.8, "projection\n+ L2 norm → $t$", "text")
    image_proj = box(4.6, 0.5, 1.7, 0.8, "projection\n+ L2 norm → $v$", "image")
    nce = box(4.45, 1.9, 2.0, 0.8, "InfoNCE($t$, $v$): align\nthe pairs (ch. 04)", "loss")
    fusion = box(7.0, 1.75, 1.9, 1.1, "attention fusion\nover $[t,\\ v,\\ t \\odot v]$",
                 "shared", "ch. 05")
    head = box(9.35, 1.9, 1.2, 0.8, "classifier", "shared")
    out = box(10.9, 1.9, 1.0, 0.8, "emoticon\nlogits", "loss")
    for a, b in ((text_in, text_enc), (image_in, image_enc), (text_enc, text_proj),
                 (image_enc, image_proj), (head, out)):
        arrow((a[0] + a[2], a[1] + a[3] / 2), (b[0], b[1] + b[3] / 2))
    arrow((fusion[0] + fusion[2], fusion[1] + fusion[3] / 2), (head[0], head[1] + head[3] / 2))
    arrow((text_proj[0] + text_proj[2], text_proj[1] + 0.4), (fusion[0], fusion[1] + 0.85))
    arrow((image_proj[0] + image_proj[2], image_proj[1] + 0.4), (fusion[0], fusion[1] + 0.25))
    arrow((text_proj[0] + 0.85, text_proj[1]), (nce[0] + 1.0, nce[1] + nce[3]), ls="--")
    arrow((image_proj[0] + 0.85, image_proj[1] + image_proj[3]), (nce[0] + 1.0, nce[1]),
          ls="--")
    ax.text(9.0, 0.55, "loss = CE(logits, $y$) + $\\lambda$ · InfoNCE($t$, $v$)\n"
            "training: ch. 06 · evaluation: ch. 07 · shared space: ch. 08",
            ha="left", va="center", fontsize=8.5)
    title = "Dual-encoder contrastive model for emoticon prediction"
    ax.set_title(title + (f"  ({profile_note})" if profile_note else ""), fontsize=11)
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
               cols: int = 4, size: float = 2.0, suptitle: str = ""):
    """Images (H, W, 3) uint8 or float in [0, 1] in a grid, each with an optional title."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.3),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k])
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def patch_grid(image: np.ndarray, patch: int, max_tokens: int = 16):
    """An image cut into its ViT patch grid (left) and the first patches as a sequence (right)."""
    height, width = image.shape[:2]
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of patch {patch}")
    fig = plt.figure(figsize=(10, 3.4))
    grid = fig.add_gridspec(2, max_tokens, width_ratios=[1] * max_tokens, left=0.34,
                            right=0.99, wspace=0.15, hspace=0.05)
    ax = fig.add_axes((0.02, 0.08, 0.28, 0.84))
    ax.imshow(image)
    for k in range(1, height // patch):
        ax.axhline(k * patch - 0.5, color="white", lw=1)
    for k in range(1, width // patch):
        ax.axvline(k * patch - 0.5, color="white", lw=1)
    n = (height // patch) * (width // patch)
    ax.set_title(f"{height}×{width} px → {height // patch}×{width // patch} = {n} patches "
                 f"of {patch}×{patch}", fontsize=9)
    ax.axis("off")
    per_row = width // patch
    shown = min(n, 2 * max_tokens)
    for k in range(shown):
        r, c = divmod(k, per_row)
        sub = fig.add_subplot(grid[k // max_tokens, k % max_tokens])
        sub.imshow(image[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch])
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_xlabel(str(k), fontsize=6, labelpad=1)
    fig.text(0.66, 0.95, f"the token sequence (first {shown} of {n}, row by row)",
             ha="center", fontsize=9)
    return fig


def similarity_panels(matrices: dict[str, np.ndarray], row_labels: Sequence[str] | None = None,
                      col_labels: Sequence[str] | None = None, vmin: float | None = -1.0,
                      vmax: float | None = 1.0, annotate: bool = False, suptitle: str = "",
                      shared: bool = True, blocks: Sequence[int] | None = None):
    """Several similarity matrices side by side.

    ``shared``: one colour scale for all (``vmin``/``vmax``, None: from the data); else each
    panel spans its own min..max with its own colour bar. ``blocks``: sizes of consecutive
    groups of rows/columns, separated by lines. Row labels are drawn on the first panel only.
    """
    mats = {k: np.asarray(v, dtype=float) for k, v in matrices.items()}
    lo = min(m.min() for m in mats.values()) if vmin is None else vmin
    hi = max(m.max() for m in mats.values()) if vmax is None else vmax
    n = len(mats)
    first = next(iter(mats.values()))
    side = 3.0 + 0.12 * max(first.shape)
    extra = 2.2 if row_labels is not None else 0.6
    fig, axes = plt.subplots(1, n, figsize=(side * n + extra + (0 if shared else 0.6 * n),
                                            side + 0.4), squeeze=False)
    im = None
    for k, (ax, (name, m)) in enumerate(zip(axes[0], mats.items(), strict=True)):
        im = ax.imshow(m, cmap="RdBu_r", vmin=lo if shared else m.min(),
                       vmax=hi if shared else m.max())
        ax.set_title(name, fontsize=9)
        if row_labels is not None and k == 0:
            ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
        else:
            ax.set_yticks([])
        if col_labels is not None:
            ax.set_xticks(range(len(col_labels)), col_labels, fontsize=7, rotation=60,
                          ha="right")
        else:
            ax.set_xticks([])
        for edge in np.cumsum(blocks)[:-1] if blocks is not None else []:
            ax.axhline(edge - 0.5, color="black", lw=0.8)
            ax.axvline(edge - 0.5, color="black", lw=0.8)
        if annotate:
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        if not shared:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    if shared:
        fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
