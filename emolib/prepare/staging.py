"""Every dataset is built beside its target and moved into place only when finished.

So ``data/<name>`` holds either a complete dataset, marked by ``.complete`` (written
last), or what was there before: a failed or interrupted run, ``--force`` included,
leaves nothing half-written.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from emolib import layout
from emolib.layout import COMPLETE, DataError, Label

#: What a writer returns: the metadata rows, the ordered classes, provenance for .complete.
Built = tuple[pd.DataFrame, list[Label], dict]


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_labels(path: Path, labels: list[Label]) -> None:
    write_json(path, [{"emoji": lab.emoji, "name": lab.name} for lab in labels])


def write_metadata(path: Path, frame: pd.DataFrame) -> None:
    frame.loc[:, list(layout.COLUMNS)].to_csv(path, index=False, encoding="utf-8")


def needs_build(out: str | Path, force: bool = False) -> bool:
    """False when ``out`` is a complete dataset (and not ``force``); a folder holding
    anything else is refused, since it may be the user's."""
    out = Path(out)
    if force or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return True
    if layout.is_complete(out):
        return False
    raise DataError(f"{out} exists but holds no finished dataset (no {COMPLETE} marker); "
                    "remove it, choose another --out, or pass --force to replace it")


def build(out: str | Path, write: Callable[[Path], Built]) -> None:
    """Run ``write(tmp)`` in ``.NAME.partial`` beside ``out``, then validate, mark, rename.

    ``write`` fills ``tmp/images`` (and files of its own) and returns the rows, labels and
    provenance; metadata.csv and labels.json are read back with the checks training uses.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run: ours, by its name
    (tmp / "images").mkdir(parents=True)
    try:
        rows, labels, info = write(tmp)
        write_labels(tmp / "labels.json", labels)
        write_metadata(tmp / "metadata.csv", rows)
        layout.read_metadata(tmp / "metadata.csv", layout.read_labels(tmp / "labels.json"))
        write_json(tmp / COMPLETE, info)
        if out.exists():  # the dataset being rebuilt, or an empty folder
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
