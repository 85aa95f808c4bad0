"""Helpers that chapters 05-08 use: hard-label metrics and the EmoSynth reference."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import matthews_corrcoef

from emolib.metrics import label_metrics
from emolib.synth import bayes_reference, ceilings


def test_label_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    m = label_metrics(y, p, 5)
    assert m["accuracy"] == pytest.approx((y == p).mean())
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, p))
    assert label_metrics(y, y, 5) == {"accuracy": 1.0, "mcc": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match=r"\(N,\)"):
        label_metrics(y, p[:10], 5)


def test_bayes_reference_is_near_the_analytic_ceilings(tiny_synth):
    ref = bayes_reference(tiny_synth, "train")
    assert set(ref) == {"text", "image", "joint"}
    cfg = json.loads((tiny_synth / "emosynth.json").read_text())["config"]
    ceil = ceilings(cfg["classes"], cfg["noise"])
    lat = pd.read_csv(tiny_synth / "latents.csv")
    lat = lat[lat["split"] == "train"]
    # the joint oracle is exactly right wherever the label was not flipped
    assert ref["joint"]["accuracy"] == pytest.approx((lat["y"] == lat["true_class"]).mean())
    assert ref["joint"]["accuracy"] > ref["text"]["accuracy"]
    for name in ("text", "image"):
        assert abs(ref[name]["accuracy"] - ceil[name]) < 0.15  # 128 posts: sampling noise


def test_bayes_reference_errors(tiny_synth, tmp_path):
    with pytest.raises(FileNotFoundError, match="latents.csv"):
        bayes_reference(tmp_path)
    with pytest.raises(ValueError, match="no posts"):
        bayes_reference(tiny_synth, "nope")


def test_curves_figure_has_a_line_per_curve_and_reference():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emolib.plots import curves

    x = np.arange(5)
    fig = curves(x, {"a": x * 0.1, "b": x * 0.2}, refs={"ceiling": 0.9, "chance": 0.1},
                 xlabel="k", ylabel="recall", ylim=(0, 1), logx=False)
    ax = fig.axes[0]
    assert len(ax.lines) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["a", "b"]
    plt.close(fig)


def _overlaps(fig, ax, artists):
    """Artists of ``ax`` whose drawn box intersects the legend's."""
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    return [a for a in artists if a.get_window_extent().overlaps(legend)]


def test_legends_cover_no_bar_and_no_value_label():
    """Chapter 07's bar charts: the legend sits where no bar (or a bar's printed value) is,
    even when the last bar is long (the λ = 0 ablation) or a class's stack reaches 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emolib.plots import fusion_weights, results_bars

    table = pd.DataFrame({"accuracy": [0.93, 0.46, 0.28, 0.87, 0.97]},
                         index=["full", "text only", "image only", "concat", "λ = 0"])
    fig = results_bars(table, ceilings={"joint": 0.956, "text": 0.481})
    ax = fig.axes[0]
    assert not _overlaps(fig, ax, [*ax.patches, *ax.texts])
    plt.close(fig)
    rng = np.random.default_rng(0)
    weights = rng.dirichlet([1, 1, 1], size=(40, 4))  # (posts, heads, tokens)
    fig = fusion_weights(weights, rng.integers(0, 8, 40), [f"class {i}" for i in range(8)])
    ax = fig.axes[0]
    assert not _overlaps(fig, ax, ax.patches)
    plt.close(fig)


def test_the_loss_legend_and_the_umap_legend_cover_no_data():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emolib.plots import embedding_scatter, history

    frame = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.3, 2.6, 2.0],
                          "train_ce": [1.2, 0.6, 0.2], "train_contrastive": [4.2, 4.1, 3.6],
                          "val_accuracy": [0.7, 0.8, 0.9], "val_mcc": [0.6, 0.7, 0.8]})
    fig = history(frame, ceiling=0.956)
    loss = fig.axes[0]
    fig.canvas.draw()
    box = loss.get_legend().get_window_extent()
    for line in loss.get_lines():
        xy = loss.transData.transform(line.get_xydata())
        assert not any(box.contains(x, y) for x, y in xy), line.get_label()
    plt.close(fig)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 2))
    fig = embedding_scatter(points, rng.integers(0, 4, 40), np.array(["text", "image"] * 20),
                            ["a", "b", "c", "d"])
    ax = fig.axes[0]
    fig.canvas.draw()
    legend, frame_box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame_box.x1 - 1, "the legend sits beside the map"
    plt.close(fig)
