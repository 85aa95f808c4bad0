"""The canonical dataset layout every source is converted into, and its validation.

A dataset lives in ``data/<name>/``::

    metadata.csv   columns id,text,image,label,split (UTF-8); image is relative to images/
    labels.json    ordered classes: [{"emoji": "😂", "name": "face with tears of joy"}, ...]
    images/        the image files

Validation errors name the offending row and say how to fix it. This module only reads;
:mod:`emolib.prepare` writes datasets.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COLUMNS = ("id", "text", "image", "label", "split")
SPLITS = ("train", "val", "test")
#: Written last into a dataset folder, once it is complete: a half-written one never counts.
COMPLETE = ".complete"


class DataError(ValueError):
    """Raised for a dataset that does not follow the canonical layout."""


@dataclass(frozen=True)
class Label:
    emoji: str
    name: str


def read_labels(path: str | Path) -> list[Label]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: write labels.json, a list of {{emoji, name}} objects")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path} must hold a non-empty list of {{emoji, name}} objects")
    labels = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "emoji" not in item:
            raise DataError(f"{path} entry {i} must be an object with keys 'emoji' and 'name'")
        labels.append(Label(str(item["emoji"]), str(item.get("name", item["emoji"]))))
    emojis = [lab.emoji for lab in labels]
    if len(set(emojis)) != len(emojis):
        raise DataError(f"{path} lists an emoji twice; each class must appear once")
    return labels


def csv_records(lines, path: Path, sep: str = ",") -> list[list[str]]:
    """Every row of a CSV (strict: a stray quote is an error, not merged into its field),
    or one DataError naming the line and the fix."""
    reader = csv.reader(lines, delimiter=sep, strict=True)
    try:
        return list(reader)
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: {err} (a field with quotes must be "
                        'quoted, its quotes doubled: "say ""hi""")') from None


def read_metadata(path: str | Path, labels: list[Label]) -> pd.DataFrame:
    """Read and validate metadata.csv; labels may be given as emoji or as class names."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: a dataset needs metadata.csv with columns "
                        f"{','.join(COLUMNS)}")
    def too_many(fields: list[str]) -> None:
        raise DataError(f"{path}: the row with id {fields[0]!r} has {len(fields)} fields, the "
                        f"header {len(COLUMNS)}; quote text that holds commas (\"like, this\")")

    try:
        with warnings.catch_warnings():  # pandas only warns when the first row is too long
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8",
                                engine="python", index_col=False, on_bad_lines=too_many)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path} is empty: write a header line {','.join(COLUMNS)} and one "
                        "row per post") from err
    except pd.errors.ParserWarning as err:
        raise DataError(f"{path}: the first row has more fields than the header; quote text "
                        "that holds commas") from err
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: {str(err).strip()}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 (byte {err.start}: {err.reason}); re-save it "
                        "as UTF-8") from err
    with open(path, newline="", encoding="utf-8") as f:  # pandas' python engine silently
        csv_records(f, path)                              # drops a row that csv rejects
    short = frame.isna().any(axis=1)
    if short.any():
        row = int(short.idxmax())
        raise DataError(f"{path} row {row + 2} has fewer fields than the header "
                        f"{','.join(frame.columns)}")
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    return validate_metadata(frame, labels, source=str(path))


def validate_metadata(frame: pd.DataFrame, labels: list[Label], source: str = "metadata"
                      ) -> pd.DataFrame:
    """Check columns, splits, labels and ids; return the frame with an int ``y`` column."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in COLUMNS]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}. "
                        f"The canonical columns are {','.join(COLUMNS)}"
                        + (f"; rename or drop {extra}" if extra else ""))
    frame = frame.loc[:, list(COLUMNS)].copy()
    for col in COLUMNS:
        frame[col] = frame[col].astype(str)
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        row = int(bad_split.idxmax())
        raise DataError(f"{source} row {row + 2} (id {frame.at[row, 'id']!r}): unknown split "
                        f"{frame.at[row, 'split']!r}; use one of {', '.join(SPLITS)}")
    index = {lab.emoji: i for i, lab in enumerate(labels)}
    index.update({lab.name: i for i, lab in enumerate(labels)})
    y = frame["label"].map(index)
    if y.isna().any():
        row = int(y.isna().idxmax())
        raise DataError(f"{source} row {row + 2} (id {frame.at[row, 'id']!r}): unknown label "
                        f"{frame.at[row, 'label']!r}; add it to labels.json or fix the row "
                        f"(known: {' '.join(lab.emoji for lab in labels)})")
    empty_id = frame["id"].str.strip() == ""
    if empty_id.any():
        row = int(empty_id.idxmax())
        raise DataError(f"{source} row {row + 2}: empty id; give every row a unique id")
    dup = frame["id"].duplicated()
    if dup.any():
        row = int(dup.idxmax())
        raise DataError(f"{source} row {row + 2}: duplicate id {frame.at[row, 'id']!r}; "
                        "ids must be unique, rename or drop the repeated row")
    empty_image = frame["image"].str.strip() == ""
    if empty_image.any():
        row = int(empty_image.idxmax())
        raise DataError(f"{source} row {row + 2} (id {frame.at[row, 'id']!r}): empty image "
                        "path; give a file name relative to images/ or drop the row")
    frame["y"] = y.astype(int)
    return frame


def is_complete(out: str | Path) -> bool:
    """Whether ``out`` holds a finished dataset (marker written last, after validation)."""
    out = Path(out)
    return (out / COMPLETE).is_file() and (out / "metadata.csv").is_file()


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, path)
