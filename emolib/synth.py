"""EmoSynth: a deterministic synthetic tweet+image dataset whose class signal is split
between the two modalities by construction.

Every post has a hidden *true class* ``c`` among K emoticons (K even, >= 4).

* The **text** says which *text pair* ``c`` belongs to: pairs {0,1}, {2,3}, ... Each
  pair has its own vocabulary of cue phrases ("lmao", "cant stop laughing", ...); the
  rest of the tweet (mentions, filler, hashtags, URLs, typos) carries no signal.
* The **image** says which *image pair* ``c`` belongs to: pairs {K-1,0}, {1,2}, {3,4}, ...
  Each image pair has its own shape (circle, triangle, ...); position, scale, rotation,
  colours, clutter and noise carry no signal.
* A post's text pair and its image pair share exactly one class (its true class), so text
  + image pin ``c`` down.
* With probability ``noise`` the observed label is replaced by a uniformly random class.

The Bayes-optimal accuracies are therefore analytic (see :func:`ceilings`)::

    joint       = (1 - noise) + noise / K
    text-only   = (1 - noise) / 2 + noise / K      (the cue leaves two classes)
    image-only  = (1 - noise) / 2 + noise / K

This module is the generative model; :mod:`emolib.prepare.emosynth` writes it to disk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from emolib.layout import Label
from emolib.text import emoji_name

EMOJI = ["😂", "❤️", "😍", "😭", "🔥", "😊", "🙏", "😎",
         "💯", "😒", "🤔", "👀", "✨", "💕", "😘", "🎉"]

TEXT_CUES = [
    ["lmao", "cant stop laughing", "im dead", "hahaha", "this is hilarious", "i'm crying laughing"],
    ["miss you so much", "worst day ever", "heartbroken", "so sad rn", "why does this hurt",
     "feeling low"],
    ["lets goooo", "absolutely insane", "this is lit", "game day", "on fire tonight",
     "hyped af"],
    ["thank you all", "so blessed", "grateful for this", "praying for you", "amen",
     "thankful today"],
    ["cannot believe this", "wait what", "no way", "plot twist", "hmm thinking about it",
     "really though"],
    ["date night", "my favourite person", "love of my life", "forever us", "kisses",
     "so in love"],
    ["new haircut", "fresh fit", "looking sharp", "drip check", "glow up", "clean look"],
    ["happy birthday", "party time", "we did it", "cheers to that", "celebration mode",
     "big news"],
]
SHAPES = ["circle", "triangle", "square", "star", "cross", "ring", "heart", "hexagon"]

FILLERS = [
    "just got home", "coffee first", "anyway", "honestly", "with the squad", "at the beach",
    "monday again", "weekend vibes", "after work", "on the train", "new post", "look at this",
    "my dog agrees", "finally", "again and again", "no filter", "throwback", "so yeah",
    "sunday mood", "the view tho", "same as always", "cant wait", "best time", "mood",
]
HASHTAGS = ["#mood", "#tbt", "#weekend", "#life", "#instagood", "#photooftheday", "#fun",
            "#nofilter", "#love", "#summer", "#friday", "#goals"]
NAMES = ["alex", "sam", "jordan", "maria", "chris", "priya", "leo", "nina", "kai", "zoe"]


@dataclass(frozen=True)
class SynthConfig:
    size: int = 6000
    classes: int = 8
    image_size: int = 64
    noise: float = 0.05
    seed: int = 0
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def check(self) -> None:
        if self.classes < 4 or self.classes % 2 or self.classes > len(EMOJI):
            raise ValueError(f"classes must be even, between 4 and {len(EMOJI)}; "
                             f"got {self.classes}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must be in [0, 1); got {self.noise}")
        if self.size < 10:
            raise ValueError(f"size must be at least 10; got {self.size}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16; got {self.image_size}")


def ceilings(classes: int, noise: float) -> dict[str, float]:
    """Bayes-optimal accuracy with text only, image only, and both."""
    single = (1 - noise) / 2 + noise / classes
    return {"text": single, "image": single, "joint": (1 - noise) + noise / classes}


def text_group(c: np.ndarray | int, classes: int) -> np.ndarray | int:
    return c // 2


def image_group(c: np.ndarray | int, classes: int) -> np.ndarray | int:
    return ((c + 1) % classes) // 2


def bayes_predict(text_grp: np.ndarray | None, image_grp: np.ndarray | None,
                  classes: int) -> np.ndarray:
    """The exact Bayes classifier given the observable cues (either may be None).

    With both cues the posterior is concentrated on the one shared class; with one cue it
    is uniform over that cue's two classes, so any of the two is optimal (we take the first).
    """
    if text_grp is not None and image_grp is not None:
        text_grp, image_grp = np.asarray(text_grp), np.asarray(image_grp)
        # candidates 2g and 2g+1; keep the one whose image group matches
        first = 2 * text_grp
        return np.where(image_group(first, classes) == image_grp, first, first + 1)
    if text_grp is not None:
        return 2 * np.asarray(text_grp)
    if image_grp is not None:
        return (2 * np.asarray(image_grp) - 1) % classes
    raise ValueError("give at least one of text_grp, image_grp")


def bayes_reference(data_dir: str | Path, split: str = "test") -> dict[str, dict[str, float]]:
    """The Bayes classifier of EmoSynth, measured on one split of a generated dataset.

    It reads the hidden cues of each post from ``latents.csv`` (which a model never sees)
    and predicts with :func:`bayes_predict` from the text cue, the image cue, or both.
    Returns ``{"text": metrics, "image": metrics, "joint": metrics}``. Only accuracy is a
    ceiling: the one-cue classifier breaks its ties towards one class of each pair, so
    its MCC and macro-F1 are those of that rule, not the best any model can reach.
    """
    from emolib.metrics import label_metrics

    data_dir = Path(data_dir)
    if not (data_dir / "latents.csv").is_file():
        raise FileNotFoundError(f"{data_dir}/latents.csv not found: bayes_reference needs "
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


def sample_latents(cfg: SynthConfig) -> pd.DataFrame:
    """The hidden variables of every post: true class, both cues, observed label, split."""
    cfg.check()
    rng = np.random.default_rng([cfg.seed, 1])
    true = rng.integers(0, cfg.classes, cfg.size)
    flip = rng.random(cfg.size) < cfg.noise
    label = np.where(flip, rng.integers(0, cfg.classes, cfg.size), true)
    n_train = int(round(cfg.splits[0] * cfg.size))
    n_val = int(round(cfg.splits[1] * cfg.size))
    split = np.array(["train"] * n_train + ["val"] * n_val
                     + ["test"] * (cfg.size - n_train - n_val))
    split = split[rng.permutation(cfg.size)]
    return pd.DataFrame({
        "id": [f"s{i:06d}" for i in range(cfg.size)],
        "true_class": true,
        "text_group": text_group(true, cfg.classes),
        "image_group": image_group(true, cfg.classes),
        "y": label,
        "split": split,
    })


# ---------------------------------------------------------------- text
def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(0, 3)
    if kind == 0:  # swap
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double


def make_text(group: int, rng: np.random.Generator) -> str:
    """A tweet whose only class signal is one cue phrase of ``group``."""
    cue = str(rng.choice(TEXT_CUES[group]))
    filler = [_typo(w, rng) if rng.random() < 0.08 else w
              for w in " ".join(rng.choice(FILLERS, size=rng.integers(1, 3))).split()]
    parts = [cue, " ".join(filler)]
    rng.shuffle(parts)
    if rng.random() < 0.4:
        parts.insert(0, f"@{rng.choice(NAMES)}{rng.integers(0, 99)}")
    if rng.random() < 0.5:
        parts.append(" ".join(rng.choice(HASHTAGS, size=rng.integers(1, 3), replace=False)))
    if rng.random() < 0.25:
        parts.append(f"https://t.co/{rng.integers(10**6, 10**7):x}")
    text = " ".join(parts)
    return text.upper() if rng.random() < 0.05 else text


# ---------------------------------------------------------------- images
def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float
                  ) -> list[tuple[float, float]]:
    def poly(n: int, radii: list[float], offset: float = 0.0) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            t = angle + offset + 2 * math.pi * k / n
            rad = radii[k % len(radii)]
            pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
        return pts

    if shape == "triangle":
        return poly(3, [r])
    if shape == "square":
        return poly(4, [r])
    if shape == "hexagon":
        return poly(6, [r])
    if shape == "star":
        return poly(10, [r, 0.45 * r])
    if shape == "cross":
        w = 0.35
        base = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w),
                (-1, -w), (-1, w), (-w, w), (-w, 1)]
        ca, sa = math.cos(angle), math.sin(angle)
        return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in base]
    if shape == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3 / 17
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t)
                  - math.cos(4 * t)) / 17
            ca, sa = math.cos(angle), math.sin(angle)
            pts.append((cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)))
        return pts
    raise ValueError(shape)


def _colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    lo, hi = (150, 256) if light else (0, 150)
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def make_image(group: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A drawing whose only class signal is the shape of ``group``."""
    scale = 2  # draw large, then downsample: anti-aliased edges
    s = size * scale
    img = Image.new("RGB", (s, s), _colour(rng, light=True))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):  # clutter: thin lines and dots
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, s, 4))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=_colour(rng, light=False), width=scale)
        else:
            rad = s * 0.03
            draw.ellipse((x0 - rad, y0 - rad, x0 + rad, y0 + rad), fill=_colour(rng, False))
    shape = SHAPES[group]
    r = float(rng.uniform(0.22, 0.36)) * s
    cx, cy = (float(v) for v in rng.uniform(r + 2, s - r - 2, 2))
    angle = float(rng.uniform(0, 2 * math.pi))
    fill = _colour(rng, light=False)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        ri = 0.55 * r
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=_colour(rng, light=True))
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, angle), fill=fill)
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    pixels = np.asarray(img, dtype=np.float32)
    pixels += rng.normal(0.0, float(rng.uniform(2, 12)), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------- dataset
def labels_for(classes: int) -> list[Label]:
    return [Label(e, emoji_name(e)) for e in EMOJI[:classes]]
