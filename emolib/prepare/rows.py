"""The row rules both converters share: clean the text, read the label, split the rows,
and count each row skipped or changed (the table printed at the end).
"""

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import emoji
import numpy as np
import pandas as pd
from PIL import Image

from emolib.images import REASONS, save_rgb
from emolib.layout import SPLITS, DataError, Label
from emolib.text import emoji_name, find_emoji, strip_emoji

MAX_TEXT = 1000  # longer texts are cut to this many characters
#: Why a row is skipped or changed (book/own_data.md says what each one means).
SKIP_REASONS = (*REASONS, "outside-dataset", "empty-text", "missing-label", "unknown-label",
                "duplicate-id", "no-caption", "no-emoji", "mixed-emoji", "rare-emoji")
CHANGE_REASONS = ("text-truncated",)


@dataclass
class Report:
    """What a conversion did: rows skipped or changed, by reason, and what it wrote."""

    out: Path
    skips: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # the first row of each reason
    frame: pd.DataFrame | None = None  # the rows written; None: out was already complete
    labels: list[Label] = field(default_factory=list)

    def skip(self, reason: str, where: str, counts: Counter | None = None) -> None:
        (self.skips if counts is None else counts)[reason] += 1
        self.examples.setdefault(reason, where)

    def table(self) -> str:
        lines = [f"note: {note}" for note in dict.fromkeys(self.notes)]
        for title, counts in (("skipped", self.skips), ("changed (kept)", self.changes)):
            lines.append(f"{title}: {sum(counts.values())} rows" if counts else f"{title}: none")
            width = max(map(len, counts), default=0)
            lines += [f"  {'reason':<{width}}  {'count':>6}  first example"] if counts else []
            lines += [f"  {reason:<{width}}  {n:>6}  {self.examples[reason][:90]}"
                      for reason, n in counts.most_common()]
        return "\n".join(lines)

    def summary(self) -> str:
        if self.frame is None:
            return (f"{self.out} already holds a complete dataset; nothing to do (pass "
                    "--force to rebuild it)")
        counts = self.frame["split"].value_counts()
        splits = ", ".join(f"{split} {counts.get(split, 0)}" for split in SPLITS)
        return (f"{self.table()}\nwrote {self.out}: {len(self.frame)} rows ({splits}), "
                f"{len(self.labels)} classes: {' '.join(lab.emoji for lab in self.labels)}")


_MODIFIERS = frozenset([chr(c) for c in range(0x1F3FB, 0x1F400)] + ["\ufe0e", "\ufe0f"])


def emoji_kind(symbol: str) -> str:
    """One form per emoji: skin tones and variation selectors dropped, then the emoji
    package's fully-qualified form (👍🏽 and 👍 are one kind, ❤ and ❤️ too)."""
    return emoji.emojize(emoji.demojize("".join(c for c in symbol if c not in _MODIFIERS)))


def clean_text(raw: object, report: Report, where: str) -> str | None:
    """Emoji (the label must not hide in its input) and control characters removed,
    whitespace collapsed, length capped; None, counted, when nothing is left."""
    text = strip_emoji(unicodedata.normalize("NFC", raw if isinstance(raw, str) else ""))
    text = "".join(c for c in text if c not in _MODIFIERS
                   and (c.isspace() or unicodedata.category(c) not in ("Cc", "Cf", "Cs")))
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        report.skip("empty-text", where)
    elif len(text) > MAX_TEXT:
        report.skip("text-truncated", where, report.changes)
    return text[:MAX_TEXT].rstrip() or None


def resolve_label(raw: str) -> str:
    """A label cell as its class: an emoji (also spelled ``:name:``) or the text as given."""
    value = unicodedata.normalize("NFC", raw.strip())
    if find_emoji(value) == [value]:
        return emoji_kind(value)
    # aliases only in colons: a bare "joy" stays a class name, ":joy:" is 😂
    for language in (["alias"] if value.startswith(":") else []) + ["en"]:
        symbol = emoji.emojize(f":{value.strip(':')}:", language=language)
        if emoji.is_emoji(symbol):
            return emoji_kind(symbol)
    return value


def stratified_split(labels: Sequence[str], seed: int = 0, report: Report | None = None
                     ) -> list[str]:
    """A seeded 80/10/10 train/val/test split that keeps class proportions (scikit-learn);
    classes too small to stratify fall back to a plain seeded split, noted in the report."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=object)
    if len(y) < 3:
        raise DataError(f"only {len(y)} usable rows: too few for a train/val/test split")

    def split(ids: np.ndarray, size: float) -> list[np.ndarray]:
        try:
            return train_test_split(ids, test_size=size, random_state=seed, stratify=y[ids])
        except ValueError:  # a class with a single member cannot be stratified
            if report is not None:
                report.notes.append("some classes are too small for a stratified split; "
                                    "split at random instead")
            return train_test_split(ids, test_size=size, random_state=seed)

    train, rest = split(np.arange(len(y)), 0.2)
    val, test = split(rest, 0.5) if len(rest) > 1 else (rest, rest[:0])
    out = np.empty(len(y), dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return list(out)


def save_image(tmp: Path, row_id: str, img: Image.Image, max_side: int, taken: set) -> str:
    """Save under ``tmp/images`` with a file name made from ``row_id``; return the name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", row_id).strip("._")[:80] or "img"
    name, n = f"{stem}.jpg", 1
    while name.lower() in taken:  # ids that differ only in case or punctuation
        n += 1
        name = f"{stem}-{n}.jpg"
    taken.add(name.lower())
    save_rgb(img, tmp / "images" / name, max_side)
    return name


def finish(report: Report, rows: list[dict], order: Sequence[str], seed: int,
           **info) -> tuple[pd.DataFrame, list[Label], dict]:
    """The rows (split where they have none), the labels present in ``order``, provenance."""
    if not rows:
        raise DataError(f"no row could be converted:\n{report.table()}")
    frame = report.frame = pd.DataFrame(rows)
    if "split" not in frame or frame["split"].isna().any():
        frame["split"] = stratified_split(list(frame["label"]), seed, report)
    report.labels = [Label(c, emoji_name(c) if emoji.is_emoji(c) else c)
                     for c in order if c in set(frame["label"])]
    return frame, report.labels, {**info, "seed": seed, "rows": len(frame),
                                  "skipped": dict(report.skips), "changed": dict(report.changes)}
