"""What every source shares: the row rules, the report of rows skipped and why, and :func:`build`
(beside the target, then moved in: a failed run, ``--force`` too, leaves nothing half-written)."""

import json
import os
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import emoji
import numpy as np
import pandas as pd
from PIL import Image

from emolib import layout
from emolib.images import ImageSkip, load_rgb
from emolib.layout import COMPLETE, SPLITS, DataError, Label
from emolib.text import bare_emoji, emoji_name, find_emoji, strip_emoji

Built = tuple[pd.DataFrame, list[Label], dict]  # what a writer gives build: rows, labels, info
#: Converted images are downscaled so that their longest side is at most this.
MAX_SIDE = 512


def save_rgb(img: Image.Image, path: str | Path, max_side: int = MAX_SIDE) -> Path:
    """Downscale (longest side <= ``max_side``) and save as JPEG, or PNG for a .png name.

    Converted datasets keep one small, uniform file per example, so that later stages
    (the tensor cache, the notebooks) never meet the odd formats again.
    """
    path = Path(path)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if path.suffix.lower() == ".png":
        img.save(path, format="PNG", optimize=True)
    else:
        img.save(path, format="JPEG", quality=90)
    return path


@dataclass
class Report:
    """What a conversion did: the rows kept, and the rows skipped by reason."""

    out: Path
    rows: list[dict] = field(default_factory=list)
    skips: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # the first row of each reason
    frame: pd.DataFrame | None = None  # the rows written; None: out was already complete
    labels: list[Label] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        self.skips[reason] += 1
        self.examples.setdefault(reason, where)

    def keep(self, row: dict, image: object, where: str, tmp: Path, max_side: int) -> None:
        """Keep ``row`` with its image (a path or bytes) as ``tmp/images/N.jpg``, or skip it."""
        try:
            img = load_rgb(image)
        except ImageSkip as skip:
            return self.skip(skip.reason, f"{where}: {skip}")
        self.rows.append({**row, "image": f"{len(self.rows) + 1:06d}.jpg"})
        save_rgb(img, tmp / "images" / self.rows[-1]["image"], max_side)

    def finish(self, order: Sequence[str], seed: int, **info) -> Built:
        """What :func:`build` writes: the rows (split if unsplit), labels, provenance."""
        if not self.rows:
            raise DataError(f"no row could be converted; skipped: {dict(self.skips)}")
        frame = self.frame = pd.DataFrame(self.rows)
        if "split" not in frame or frame["split"].isna().any():
            frame["split"] = stratified_split(list(frame["label"]), seed)
        self.labels = [Label(c, emoji_name(c) if emoji.is_emoji(c) else c)
                       for c in order if c in set(frame["label"])]
        return frame, self.labels, {**info, "seed": seed, "rows": len(frame),
                                    "skipped": dict(self.skips)}

    def summary(self) -> str:
        """The skip table, with the first example of each reason, and what was written."""
        if self.frame is None:
            return f"{self.out} already holds a complete dataset; nothing to do"
        lines = [f"skipped: {self.skips.total()} rows"] + [
            f"  {reason:<16} {n:>6}  {self.examples[reason][:90]}"
            for reason, n in self.skips.most_common()]
        splits = ", ".join(f"{s} {(self.frame['split'] == s).sum()}" for s in SPLITS)
        return "\n".join([*lines, f"wrote {self.out}: {len(self.frame)} rows ({splits}), "
                          f"{len(self.labels)} classes: {' '.join(x.emoji for x in self.labels)}"])


def emoji_kind(symbol: str) -> str:
    """One form per emoji, without skin tone, fully qualified: 👍🏽 is 👍, ❤ is ❤️."""
    return emoji.emojize(emoji.demojize(bare_emoji(symbol)))


def resolve_label(raw: str) -> str:
    """A label cell as its class: an emoji (also ``:name:``) as its kind, other text as is."""
    value = emoji.emojize(unicodedata.normalize("NFC", raw.strip()), language="alias")
    return emoji_kind(value) if find_emoji(value) == [value] else value


def clean_text(raw: object, report: Report, where: str) -> str | None:
    """Emoji (the label must not hide in its input) and control characters removed, and
    whitespace collapsed; None, counted as empty-text, when nothing is left."""
    text = bare_emoji(strip_emoji(unicodedata.normalize("NFC", str(raw or ""))))
    text = re.sub(r"\s+", " ", "".join(c for c in text if c.isspace() or unicodedata.category(c)
                                       not in ("Cc", "Cf", "Cs"))).strip()
    if not text:
        report.skip("empty-text", where)
    return text or None


def stratified_split(labels: Sequence[str], seed: int = 0) -> list[str]:
    """A seeded 80/10/10 split that keeps class proportions for classes of any size: rows
    are ordered by their random rank within their class, as a fraction of the class."""
    y = np.asarray(labels, dtype=object)
    if len(y) < 3:
        raise DataError(f"only {len(y)} usable rows: too few for a train/val/test split")
    rng, key, n = np.random.default_rng(seed), np.empty(len(y)), max(1, round(0.1 * len(y)))
    for label in dict.fromkeys(labels):
        rows = np.flatnonzero(y == label)
        key[rows] = (rng.permutation(len(rows)) + 0.5) / len(rows)
    by_rank = np.array(["train"] * (len(y) - 2 * n) + ["val"] * n + ["test"] * n, dtype=object)
    return list(by_rank[np.argsort(np.argsort(key, kind="stable"))])  # each row's rank


def write_labels(path: Path, labels: list[Label]) -> None:
    layout.write_atomic(path, json.dumps([{"emoji": lab.emoji, "name": lab.name}
                                          for lab in labels], ensure_ascii=False, indent=1))


def write_metadata(path: Path, frame: pd.DataFrame) -> None:
    frame.loc[:, list(layout.COLUMNS)].to_csv(path, index=False, encoding="utf-8")


def needs_build(out: str | Path, force: bool = False) -> bool:
    """False for a complete dataset (unless ``force``); anything else there may be yours."""
    if force or not (out := Path(out)).exists() or (out.is_dir() and not any(out.iterdir())):
        return True
    if layout.is_complete(out):
        return False
    raise DataError(f"{out} exists but holds no finished dataset (no {COMPLETE} marker); "
                    "remove it, choose another --out, or pass --force to replace it")


def build(out: str | Path, write: Callable[[Path], Built], force: bool = True) -> None:
    """Unless :func:`needs_build` says no: ``write(tmp)`` fills ``.NAME.partial`` beside
    ``out``; the result is validated as training reads it, marked ``.complete``, renamed."""
    if not needs_build(out := Path(out), force):
        return
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run: ours, by its name
    (tmp / "images").mkdir(parents=True)
    try:
        rows, labels, info = write(tmp)
        write_labels(tmp / "labels.json", labels)
        write_metadata(tmp / "metadata.csv", rows)
        layout.read_metadata(tmp / "metadata.csv", layout.read_labels(tmp / "labels.json"))
        layout.write_atomic(tmp / COMPLETE, json.dumps(info, ensure_ascii=False, indent=1))
        if out.exists():  # the dataset being rebuilt, or an empty folder
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
