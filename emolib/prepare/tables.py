"""The user's tables (CSV, TSV, JSON Lines, JSON) read with pandas. A malformed one is
refused in one line naming the file, the row where there is one, and the fix.
"""

import csv
import io
import json
import re
from pathlib import Path

import pandas as pd

from emolib.layout import DataError

SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
#: Accepted column names for each role (lower-cased; spaces and dashes read as _).
ALIASES = {
    "text": "text tweet tweet_text caption content sentence message post body".split(),
    "image": ("image image_path img img_path file filename file_name image_file image_name "
              "path photo picture").split(),
    "label": "label emoji emoticon class target category emoji_label".split(),
    "id": "id tweet_id post_id uid idx".split(),
    "split": "split set subset fold partition".split(),
}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def read_table(path: Path) -> pd.DataFrame:
    """A table as strings, its column names normalised. UTF-8 (BOM or not) or UTF-16 with
    BOM, decoded here rather than by pandas (``encoding_errors``) to name a bad byte's line.
    """
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: bytes that are not {'UTF-16' if utf16 else 'UTF-8'}"
                        f" ({raw[err.start:err.end]!r}); save the file as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path} is empty; it needs a header line such as "
                        "id,text,image,label,split and one row per example")
    json_like = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    frame = _read_json(text, path) if json_like else _read_csv(text, path)
    if frame.empty:
        raise DataError(f"{path} has a header but no rows; add one row per example")
    frame.columns = [re.sub(r"[\s\-]+", "_", str(c).strip().lower()) for c in frame.columns]
    return frame.fillna("").astype(str)


def _read_csv(text: str, path: Path) -> pd.DataFrame:
    # pandas' sep=None (csv.Sniffer) takes a letter for the separator of a one-column or
    # '|' header: the commonest candidate in the header line is taken instead.
    header = text.split("\n", 1)[0]
    sep = "\t" if path.suffix.lower() == ".tsv" else max(",\t;|", key=header.count)

    def too_long(fields: list[str]) -> None:  # pandas passes the fields, not the line
        raise DataError(f"{path}: the row {sep.join(fields)[:60]!r} has {len(fields)} fields, "
                        f"the header {header.count(sep) + 1}; quote a field that holds {sep!r}"
                        ", or remove the extra one")

    # header=None: the header line sets the width, so a longer row is a bad line
    frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, engine="python",
                        keep_default_na=False, on_bad_lines=too_long)
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    try:  # pandas' python engine silently drops a row that csv rejects: find it
        for _ in reader:
            pass
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: {err} (a field with quotes must be "
                        'quoted, its quotes doubled: "say ""hi""")') from err
    frame = frame.iloc[1:].set_axis(list(frame.iloc[0]), axis=1)
    short = frame.isna().any(axis=1).to_numpy()
    if short.any():
        i = int(short.argmax())
        raise DataError(f"{path} row {i + 2}: {frame.iloc[i].notna().sum()} fields, the header "
                        f"has {frame.shape[1]}; fill in the missing ones or remove the row")
    return frame


def _read_json(text: str, path: Path) -> pd.DataFrame:
    lines = not text.lstrip().startswith("[")  # JSON Lines, or one list of objects
    try:
        return pd.read_json(io.StringIO(text), lines=lines, dtype=False, convert_dates=False)
    except ValueError:
        pass  # pandas names a character offset: find the line
    for i, line in enumerate(text.splitlines() if lines else [], 1):
        try:
            json.loads(line or "{}")
        except ValueError:
            raise DataError(f"{path} line {i} is not valid JSON; give one object per line") \
                from None
    raise DataError(f"{path} is not valid JSON; give one object per line (JSON Lines) or a "
                    "list of objects")


def map_columns(columns: list[str], path: Path) -> dict[str, str]:
    """Role (text, image, label, id, split) -> column name; a missing role names the fix."""
    found = {role: next(n for n in names if n in columns)
             for role, names in ALIASES.items() if set(names) & set(columns)}
    missing = [role for role in ("text", "image", "label") if role not in found]
    if missing:
        expected = "; ".join(f"{role}: one of {', '.join(ALIASES[role])}" for role in missing)
        raise DataError(
            f"{path.name}: no {' / '.join(missing)} column. Found columns: {', '.join(columns)}."
            " Expected a header with a text, an image and a label column (optional id and "
            f"split), e.g. 'id,text,image,label,split'; accepted names for the missing ones: "
            f"{expected}. Rename the header line")
    return found


def find_tables(src: Path) -> list[tuple[Path, str | None]]:
    """The table of a dataset folder, or its train/val/test tables with their split."""
    if not src.exists():
        raise DataError(f"{src} does not exist; give the folder (or the table file) of your "
                        "twitter-emoticon copy")
    found = [src] if src.is_file() else [
        p for p in sorted(src.iterdir()) if p.suffix.lower() in SUFFIXES and p.is_file()
        and p.stem.lower() not in ("labels", "classes") and not p.name.startswith(".")]
    splits = [SPLIT_NAMES.get(p.stem.lower()) if len(found) > 1 else None for p in found]
    if len(found) == 1 or (found and all(splits)):
        return list(zip(found, splits, strict=True))
    names = ", ".join(p.name for p in found) or "none"
    raise DataError(f"{src} needs one table with text, image and label columns (.csv, .tsv, "
                    f".jsonl, .json), or train/val/test tables; found: {names}. Pass --table "
                    "FILE to choose one")
