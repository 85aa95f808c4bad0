"""Converters from real-world sources into the canonical layout (see :mod:`emolib.layout`).

Two sources live here (the synthetic one is :mod:`emolib.synth`):

* ``instagram``: public Instagram posts with captions (Hugging Face dataset
  ``kkcosmos/instagram-images-with-captions``), labelled with the protocol of Barbieri et
  al. 2018: keep posts whose caption holds emoji of exactly one kind among the K most
  frequent, remove the emoji from the text, label = that emoji.
* ``twitter-emoticon``: a copy of the paper's Multimodal-TwitterEmoticon data that the user
  has, as a folder or as an archive URL with its SHA-256.

Every converter writes into a temporary folder next to the target and renames it into place
with a ``.complete`` marker at the end, so a half-written dataset is never taken for a
finished one. Every row that is not converted is counted under a reason, and the counts are
printed as a table at the end (:class:`Report`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import emoji
import numpy as np
import pandas as pd
from tqdm import tqdm

from emolib.download import DownloadError, check_disk_space, download, extract_archive
from emolib.images import MAX_SIDE, ImageSkip, load_rgb, save_rgb
from emolib.images import REASONS as IMAGE_REASONS
from emolib.layout import (
    COMPLETE,
    SPLITS,
    DataError,
    Label,
    is_complete,
    mark_complete,
    read_labels,
    read_metadata,
    write_labels,
    write_metadata,
)
from emolib.text import emoji_name, find_emoji, strip_emoji

INSTAGRAM_REPO = "kkcosmos/instagram-images-with-captions"
#: Longer texts are cut to this many characters (and counted as ``text-truncated``).
MAX_TEXT = 1000

#: Why a row can be left out; shown in the skip summary and in book/own_data.md.
SKIP_REASONS = {
    **IMAGE_REASONS,
    "image-outside-folder": "the image path points outside the downloaded dataset folder",
    "empty-text": "no text left (empty, whitespace only, or emoji only)",
    "missing-label": "the label cell is empty",
    "unknown-label": "the label is not one of the classes in labels.json",
    "duplicate-id": "an id already used by an earlier row (the first one is kept)",
    "bad-row": "a malformed line (wrong number of fields, or not valid JSON)",
    "invalid-utf8": "the line holds bytes that are not valid UTF-8",
    "no-caption": "the post has no caption",
    "no-emoji": "the caption holds no emoji (instagram protocol)",
    "mixed-emoji": "the caption holds more than one kind of emoji (instagram protocol)",
    "rare-emoji": "the caption's emoji is not among the top-K (instagram protocol)",
}
#: Changes made to rows that are kept.
CHANGE_REASONS = {
    "text-truncated": f"text longer than {MAX_TEXT} characters, cut to {MAX_TEXT}",
}


# --------------------------------------------------------------------------- report

@dataclass
class Report:
    """Counts of skipped and changed rows by reason, with the first few examples of each."""

    skips: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def skip(self, reason: str, where: str) -> None:
        self.skips[reason] += 1
        self._example(reason, where)

    def change(self, reason: str, where: str) -> None:
        self.changes[reason] += 1
        self._example(reason, where)

    def _example(self, reason: str, where: str) -> None:
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(where)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def table(self) -> str:
        """The skip summary: one line per reason with its count and first example."""
        lines = [f"note: {note}" for note in self.notes]
        for title, counts in (("skipped", self.skips), ("changed (kept)", self.changes)):
            if not counts:
                lines.append(f"{title}: none")
                continue
            width = max(len(r) for r in counts)
            lines.append(f"{title}: {sum(counts.values())} rows")
            lines.append(f"  {'reason':<{width}}  {'count':>6}  first example")
            for reason, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                example = self.examples.get(reason, [""])[0]
                lines.append(f"  {reason:<{width}}  {count:>6}  {example[:90]}")
        return "\n".join(lines)


@dataclass
class ConvertResult:
    """What a converter wrote (``already`` is True when it found a finished dataset)."""

    out: Path
    rows: int
    splits: dict[str, int]
    labels: list[Label]
    report: Report
    already: bool = False

    def summary(self) -> str:
        if self.already:
            return f"{self.out} already holds a complete dataset; nothing to do " \
                   "(pass --force to rebuild it)"
        parts = ", ".join(f"{s} {self.splits.get(s, 0)}" for s in SPLITS)
        return (f"{self.report.table()}\nwrote {self.out}: {self.rows} rows ({parts}), "
                f"{len(self.labels)} classes: {' '.join(lab.emoji for lab in self.labels)}")


# --------------------------------------------------------------------------- output

class DatasetWriter:
    """Builds a dataset in ``.NAME.partial`` next to ``out``; ``finish`` moves it into place."""

    def __init__(self, out: str | Path, max_side: int = MAX_SIDE):
        self.out = Path(out)
        self.max_side = max_side
        self.tmp = self.out.with_name(f".{self.out.name}.partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)  # left by an interrupted run: ours, by its name
        (self.tmp / "images").mkdir(parents=True)
        self._names: set[str] = set()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add_image(self, row_id: str, img) -> str:
        """Save an RGB image under a file name derived from ``row_id``; return the name."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", row_id).strip("._")[:80] or "img"
        name, n = f"{stem}.jpg", 1
        while name.lower() in self._names:
            n += 1
            name = f"{stem}-{n}.jpg"
        self._names.add(name.lower())
        save_rgb(img, self.tmp / "images" / name, self.max_side)
        return name

    def finish(self, rows: list[dict], labels: list[Label], info: dict) -> Path:
        """Write metadata.csv and labels.json, validate them, mark complete and rename."""
        frame = pd.DataFrame(rows, columns=["id", "text", "image", "label", "split"])
        write_labels(self.tmp / "labels.json", labels)
        write_metadata(self.tmp / "metadata.csv", frame)
        read_metadata(self.tmp / "metadata.csv", read_labels(self.tmp / "labels.json"))
        mark_complete(self.tmp, info)
        if self.out.exists():
            shutil.rmtree(self.out)  # only reached with --force (see prepare_out)
        os.replace(self.tmp, self.out)
        return self.out


def prepare_out(out: str | Path, force: bool = False) -> bool:
    """True when ``out`` is already a complete dataset (and ``force`` is off).

    Refuses to write over a folder that is not a finished dataset unless ``force``: it may
    be something else the user keeps there.
    """
    out = Path(out)
    if force or not out.exists():
        return False
    if is_complete(out):
        return True
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        return False
    raise DataError(f"{out} exists but holds no finished dataset (no {COMPLETE} marker); "
                    "remove it, choose another --out, or pass --force to replace it")


# --------------------------------------------------------------------------- text, labels

_MODIFIERS = frozenset([chr(c) for c in range(0x1F3FB, 0x1F400)] + ["\ufe0e", "\ufe0f"])
_SPACES = re.compile(r"\s+")


def _strip_modifiers(symbol: str) -> str:
    return "".join(c for c in symbol if c not in _MODIFIERS)


@lru_cache(maxsize=1)
def _qualified() -> dict[str, str]:
    """Bare form (no skin tone, no variation selector) -> fully-qualified emoji."""
    table = {}
    for symbol, data in emoji.EMOJI_DATA.items():
        if data.get("status") == emoji.STATUS["fully_qualified"] \
                and not any("\U0001f3fb" <= c <= "\U0001f3ff" for c in symbol):
            table[_strip_modifiers(symbol)] = symbol
    return table


def emoji_kind(symbol: str) -> str:
    """One canonical form per emoji: skin tones and variation selectors dropped.

    ``👍🏽`` and ``👍`` are one kind; ``❤`` and ``❤️`` are one kind (written ``❤️``).
    Returns "" for a lone modifier.
    """
    bare = _strip_modifiers(symbol)
    return _qualified().get(bare, bare)


def caption_kinds(text: str) -> set[str]:
    """The distinct emoji kinds in a caption."""
    return {kind for kind in map(emoji_kind, find_emoji(text)) if kind}


def clean_text(raw: str | None, report: Report, where: str) -> str | None:
    """Emoji removed, control characters dropped, whitespace collapsed, length capped.

    Returns None (and counts ``empty-text``) when nothing is left.
    """
    text = unicodedata.normalize("NFC", raw or "")
    text = strip_emoji(text)
    text = "".join(c for c in text if c not in _MODIFIERS
                   and (c.isspace() or unicodedata.category(c) not in ("Cc", "Cf", "Cs")))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        report.skip("empty-text", where)
        return None
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT].rstrip()
        report.change("text-truncated", where)
    return text


def resolve_label(raw: str) -> str:
    """A label cell as its class: an emoji (also from ``:name:``) or the text as given."""
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        return ""
    found = find_emoji(value)
    if len(found) == 1 and found[0] == value:
        return emoji_kind(value)
    name = value.strip(":")
    for language in ("alias", "en"):
        if language == "alias" and not value.startswith(":"):
            continue  # bare aliases ("joy") are too often plain class names
        symbol = emoji.emojize(f":{name}:", language=language)
        if symbol != f":{name}:" and emoji.is_emoji(symbol):
            return emoji_kind(symbol)
    return value


def make_labels(classes: Sequence[str]) -> list[Label]:
    """Labels for labels.json: emoji classes get their name, other classes keep theirs."""
    out = []
    for cls in classes:
        name = emoji_name(cls) if emoji.is_emoji(cls) else cls
        out.append(Label(cls, name))
    return out


# --------------------------------------------------------------------------- splits

def stratified_split(labels: Sequence[str], seed: int = 0,
                     fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     report: Report | None = None) -> list[str]:
    """A seeded train/val/test split that keeps class proportions (scikit-learn).

    Classes too small to stratify fall back to a plain seeded shuffle split (noted).
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels, dtype=object)
    n = len(y)
    if n < 3:
        raise DataError(f"only {n} usable rows: too few to make a train/val/test split")
    idx = np.arange(n)

    def split(ids: np.ndarray, test_size: float) -> tuple[np.ndarray, np.ndarray]:
        try:
            return train_test_split(ids, test_size=test_size, random_state=seed,
                                    stratify=y[ids])
        except ValueError:
            if report is not None:
                report.note("some classes are too small for a stratified split; "
                                    "split at random instead")
            return train_test_split(ids, test_size=test_size, random_state=seed)

    f_train, f_val, f_test = fractions
    train, rest = split(idx, 1.0 - f_train)
    val, test = split(rest, f_test / (f_val + f_test)) if len(rest) > 1 else (rest, rest[:0])
    out = np.empty(n, dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return list(out)


# --------------------------------------------------------------------------- instagram

_IMAGE_HINTS = ("image", "img", "photo", "picture", "pic", "jpg", "jpeg")
_CAPTION_HINTS = ("caption", "text", "content", "description", "title", "comment", "post")


def _rank(name: str, hints: Sequence[str]) -> int:
    lowered = name.lower()
    for i, hint in enumerate(hints):
        if hint in lowered:
            return i
    return len(hints)


def detect_instagram_columns(schema) -> tuple[str, str]:
    """(image column, caption column) of a parquet schema, by type and then by name.

    The image column is binary, or a struct with a binary ``bytes`` field (the Hugging
    Face ``Image`` feature); the caption column is a string.
    """
    import pyarrow as pa

    images, captions = [], []
    for fld in schema:
        t = fld.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            images.append(fld.name)
        elif pa.types.is_struct(t):
            names = [t.field(i).name for i in range(t.num_fields)]
            if "bytes" in names:
                images.append(fld.name)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            captions.append(fld.name)
    found = ", ".join(f"{fld.name} ({fld.type})" for fld in schema)
    if not images:
        raise DataError(f"no image column in the parquet files (binary, or a struct with a "
                        f"'bytes' field); the columns are: {found}")
    caption_named = [c for c in captions if _rank(c, _CAPTION_HINTS) < len(_CAPTION_HINTS)]
    if not caption_named and len(captions) != 1:
        raise DataError(f"no caption column in the parquet files (a string column named like "
                        f"{'/'.join(_CAPTION_HINTS)}); the columns are: {found}")
    image = min(images, key=lambda c: _rank(c, _IMAGE_HINTS))
    caption = min(caption_named or captions, key=lambda c: _rank(c, _CAPTION_HINTS))
    return image, caption


def _image_bytes(value) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    return bytes(value) if value is not None else None


def convert_instagram(parquet_dir: str | Path, out: str | Path, *, top_k: int = 10,
                      max_posts: int | None = None, seed: int = 0, max_side: int = MAX_SIDE,
                      force: bool = False, progress: bool = True) -> ConvertResult:
    """Convert a folder of Instagram parquet files (image bytes + caption) into ``out``.

    Pass 1 reads only the captions to find the ``top_k`` most frequent emoji among posts
    whose caption holds a single kind of emoji; pass 2 decodes the images of those posts.
    ``max_posts`` stops after that many posts are converted (a quick subset).
    """
    import pyarrow.parquet as pq

    out, parquet_dir = Path(out).expanduser(), Path(parquet_dir).expanduser()
    if prepare_out(out, force):
        return _already(out)
    files = sorted(parquet_dir.rglob("*.parquet"))
    if not files:
        raise DataError(f"no .parquet files under {parquet_dir}")
    if top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {top_k}")
    image_col, caption_col = detect_instagram_columns(pq.read_schema(files[0]))
    report = Report()

    def posts(columns: list[str], desc: str) -> Iterator[tuple[int, dict]]:
        n = 0
        total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        with tqdm(total=total, desc=desc, unit="post", disable=None if progress else True) as bar:
            for f in files:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=64, columns=columns):
                    for row in batch.to_pylist():
                        n += 1
                        bar.update(1)
                        yield n, row

    kinds_of: dict[int, str] = {}
    frequency: Counter = Counter()
    for n, row in posts([caption_col], "count emoji"):
        caption = row[caption_col]
        kinds = caption_kinds(caption) if caption else set()
        if len(kinds) == 1:
            kinds_of[n] = next(iter(kinds))
            frequency[kinds_of[n]] += 1
    top = [kind for kind, _ in sorted(frequency.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]]
    if not top:
        raise DataError(f"no caption in {parquet_dir} holds a single kind of emoji; "
                        "nothing to convert")
    keep = set(top)
    rows: list[dict] = []
    with DatasetWriter(out, max_side) as writer:
        for n, row in posts([image_col, caption_col], "convert"):
            if max_posts is not None and len(rows) >= max_posts:
                break
            row_id = f"ig{n:06d}"
            where = f"post {n} ({row_id})"
            caption = row[caption_col]
            if not caption:
                report.skip("no-caption", where)
                continue
            if n not in kinds_of:
                kinds = caption_kinds(caption)
                report.skip("no-emoji" if not kinds else "mixed-emoji", where)
                continue
            label = kinds_of[n]
            if label not in keep:
                report.skip("rare-emoji", where)
                continue
            text = clean_text(caption, report, where)
            if text is None:
                continue
            data = _image_bytes(row[image_col])
            try:
                if data is None:
                    raise ImageSkip("missing", "no image bytes in the row")
                img = load_rgb(data)
            except ImageSkip as skip:
                report.skip(skip.reason, f"{where}: {skip}")
                continue
            rows.append({"id": row_id, "text": text, "image": writer.add_image(row_id, img),
                         "label": label})
        if not rows:
            raise DataError(f"no post of {parquet_dir} survived the filters:\n{report.table()}")
        classes = [k for k in top if any(r["label"] == k for r in rows)]
        for row, split in zip(rows, stratified_split([r["label"] for r in rows], seed,
                                                     report=report), strict=True):
            row["split"] = split
        labels = make_labels(classes)
        info = _info("instagram", rows, report, top_k=top_k, max_posts=max_posts, seed=seed,
                     max_side=max_side, repo=INSTAGRAM_REPO)
        writer.finish(rows, labels, info)
    return _result(out, rows, labels, report)


def fetch_instagram(cache_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """Download (or find in the cache) the parquet files; return their folder.

    huggingface_hub resumes interrupted downloads and verifies each file's checksum.
    """
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError as err:
        raise DataError("the instagram source needs huggingface_hub and pyarrow: "
                        "pip install 'emolib[data]'") from err
    kwargs = dict(repo_id=INSTAGRAM_REPO, repo_type="dataset", revision=revision,
                  allow_patterns=["*.parquet"], cache_dir=cache_dir)
    try:
        return Path(snapshot_download(**kwargs, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached yet: go online
        pass
    try:
        meta = HfApi().dataset_info(INSTAGRAM_REPO, revision=revision, files_metadata=True)
        need = sum(s.size or 0 for s in meta.siblings or [] if s.rfilename.endswith(".parquet"))
    except Exception as err:  # noqa: BLE001 - any network failure reads the same to a user
        raise DownloadError(f"cannot reach the Hugging Face hub ({type(err).__name__}: "
                            f"{str(err)[:120]}): are you offline? Connect, or download the "
                            f"parquet files of {INSTAGRAM_REPO} elsewhere and pass "
                            "--parquet-dir") from err
    check_disk_space(cache_dir or HF_HUB_CACHE, need, f"{INSTAGRAM_REPO} ({need / 2**30:.1f} GB)")
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as err:  # noqa: BLE001
        raise DownloadError(f"download of {INSTAGRAM_REPO} failed ({type(err).__name__}: "
                            f"{str(err)[:160]}); run again to resume") from err


# --------------------------------------------------------------------------- tables

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
#: Accepted column names for each role (after lower-casing; spaces and dashes read as _).
ALIASES = {
    "text": ("text", "tweet", "tweet_text", "caption", "content", "sentence", "message",
             "post", "body"),
    "image": ("image", "image_path", "img", "img_path", "file", "filename", "file_name",
              "image_file", "image_name", "path", "photo", "picture"),
    "label": ("label", "emoji", "emoticon", "class", "target", "category", "emoji_label"),
    "id": ("id", "tweet_id", "post_id", "uid", "idx"),
    "split": ("split", "set", "subset", "fold", "partition"),
}
REQUIRED = ("text", "image", "label")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class TableRow:
    """One data row of an input table: its cells by column name and where it came from."""

    line: int
    cells: dict[str, str]
    bad: str = ""  # a skip reason found while parsing (bad-row, invalid-utf8)


def decode_table(raw: bytes, path: Path, report: Report) -> str:
    """Bytes of a table file -> text. UTF-8 (with or without BOM) and UTF-16 with BOM
    are read as such; a file with no valid UTF-8 multi-byte text at all is read as
    Windows-1252/Latin-1 (noted); otherwise invalid bytes are kept as surrogates so that
    only the rows holding them are skipped (``invalid-utf8``).
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    valid_multibyte = 0
    for line in raw.splitlines():
        if max(line, default=0) >= 0x80:
            try:
                line.decode("utf-8")
                valid_multibyte += 1
            except UnicodeDecodeError:
                continue
    if valid_multibyte == 0:
        report.note(f"{path.name} is not UTF-8; read it as Windows-1252/Latin-1 "
                            "(save it as UTF-8 to silence this note)")
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    return raw.decode("utf-8", errors="surrogateescape")


def _norm_col(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip("\ufeff").lower())


def _has_surrogates(values: Iterable[str]) -> bool:
    return any(any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def read_table(path: str | Path, report: Report) -> tuple[list[str], list[TableRow]]:
    """Read a CSV/TSV/JSON Lines/JSON table into (normalised column names, rows)."""
    path = Path(path)
    text = decode_table(path.read_bytes(), path, report)
    if text.startswith("\ufeff"):
        text = text[1:]
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _read_json(text, path)
    return _read_csv(text, path)


def _read_csv(text: str, path: Path) -> tuple[list[str], list[TableRow]]:
    first = text.split("\n", 1)[0]
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        delimiter = max([",", "\t", ";", "|"], key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path} is empty; expected a header line such as "
                        "id,text,image,label,split") from None
    columns = [_norm_col(c) for c in header]
    rows = []
    for cells in reader:
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        row = TableRow(line, dict(zip(columns, cells, strict=False)))
        if _has_surrogates(cells):
            row.bad = "invalid-utf8"
            row.cells = {"_detail": "bytes that are not UTF-8; save the file as UTF-8"}
        elif len(cells) != len(columns):
            row.bad = "bad-row"
            row.cells = {"_detail": f"{len(cells)} fields, the header has {len(columns)}"}
        rows.append(row)
    return columns, rows


def _read_json(text: str, path: Path) -> tuple[list[str], list[TableRow]]:
    rows: list[TableRow] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON ({err}); give one JSON object per "
                            "line (JSON Lines) or a list of objects") from err
        lines: Iterable[tuple[int, object]] = enumerate(items, start=1)
    else:
        lines = ((i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip())
    columns: list[str] = []
    for line, item in lines:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError:
                rows.append(TableRow(line, {"_detail": "not valid JSON"}, bad="bad-row"))
                continue
        if not isinstance(item, dict):
            rows.append(TableRow(line, {"_detail": "not a JSON object"}, bad="bad-row"))
            continue
        cells = {_norm_col(str(k)): "" if v is None else str(v) for k, v in item.items()}
        for col in cells:
            if col not in columns:
                columns.append(col)
        row = TableRow(line, cells)
        if _has_surrogates(cells.values()):
            row = TableRow(line, {"_detail": "bytes that are not UTF-8"}, bad="invalid-utf8")
        rows.append(row)
    return columns, rows


def map_columns(columns: Sequence[str], path: Path) -> dict[str, str]:
    """Role (text, image, label, id, split) -> column name; DataError naming the fix."""
    found = {}
    for role, names in ALIASES.items():
        for name in names:
            if name in columns:
                found[role] = name
                break
    missing = [role for role in REQUIRED if role not in found]
    if missing:
        expected = "; ".join(f"{role}: one of {', '.join(ALIASES[role])}" for role in missing)
        raise DataError(
            f"{path.name}: no {' / '.join(missing)} column. Found columns: "
            f"{', '.join(columns) or '(none)'}. Expected a header with a text, an image and "
            f"a label column (optional id and split), e.g. 'id,text,image,label,split'; "
            f"accepted names for the missing ones: {expected}. Rename the header line")
    return found


def find_tables(src: Path) -> list[tuple[Path, str | None]]:
    """The table file(s) of a dataset folder, with the split a file name implies.

    One table is used as is; ``train``/``val``/``test`` files (also ``valid``, ``dev``)
    are read together, each giving its rows' split.
    """
    if src.is_file():
        return [(src, None)]
    if not src.is_dir():
        raise DataError(f"{src} does not exist; give the folder (or the table file) of your "
                        "twitter-emoticon copy")
    candidates = []
    for depth in ("*", "*/*"):
        for path in sorted(src.glob(depth)):
            if (path.is_file() and path.suffix.lower() in TABLE_SUFFIXES
                    and path.stem.lower() not in ("labels", "classes")
                    and not any(p.startswith(".") for p in path.relative_to(src).parts)
                    and "images" not in path.relative_to(src).parts[:-1]):
                candidates.append(path)
        if candidates:
            break
    if not candidates:
        raise DataError(f"no table file (.csv, .tsv, .jsonl, .json) in {src}; the folder must "
                        "hold a table with text, image and label columns (see "
                        "book/own_data.md)")
    if len(candidates) == 1:
        return [(candidates[0], None)]
    by_split = [(p, _SPLIT_NAMES.get(p.stem.lower())) for p in candidates]
    if all(split is not None for _, split in by_split):
        return by_split
    preferred = [p for p in candidates if p.stem.lower() in ("metadata", "data", "dataset",
                                                              "annotations")]
    if len(preferred) == 1:
        return [(preferred[0], None)]
    names = ", ".join(str(p.relative_to(src)) for p in candidates)
    raise DataError(f"{src} holds several tables ({names}); pass --table FILE to choose one, "
                    "or name them train/val/test")


def _known_labels(src: Path, labels_file: Path | None) -> list[str] | None:
    """Classes from --labels, or a labels.json / classes.txt in the dataset folder."""
    if labels_file is not None and not labels_file.is_file():
        raise DataError(f"--labels {labels_file} does not exist")
    folder = src if src.is_dir() else src.parent
    candidates = [labels_file] if labels_file else [folder / "labels.json",
                                                    folder / "classes.txt"]
    for path in candidates:
        if not path.is_file():
            continue
        if path.suffix.lower() == ".json":
            return [resolve_label(lab.emoji) for lab in read_labels(path)]
        values = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        return [resolve_label(v) for v in values if v]
    return None


# --------------------------------------------------------------------------- twitter

def convert_twitter_emoticon(src: str | Path, out: str | Path, *, table: str | Path | None = None,
                             labels_file: str | Path | None = None, seed: int = 0,
                             max_side: int = MAX_SIDE, allow_outside: bool = True,
                             force: bool = False, progress: bool = True) -> ConvertResult:
    """Convert a folder (or table file) with text, image-path and label columns into ``out``.

    Image paths are read relative to the table's folder, its ``images/`` folder, or the
    dataset folder; a path without extension also matches ``.jpg``/``.png``/... files.
    ``allow_outside`` False (archives from the web) refuses paths leading out of ``src``.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if prepare_out(out, force):
        return _already(out)
    tables = [(Path(table), None)] if table else find_tables(src)
    root = src if src.is_dir() else src.parent
    known = _known_labels(src, Path(labels_file) if labels_file else None)
    report = Report()
    parsed = [_parse_table(path, split, report) for path, split in tables]
    has_split = all(split or "split" in roles for _, split, roles, _ in parsed)
    keep = _check_rows(parsed, has_split, known, root, allow_outside, report)
    rows_out: list[dict] = []
    with DatasetWriter(out, max_side) as writer:
        for row, image in tqdm(keep, desc="images", unit="img",
                               disable=None if progress else True):
            try:
                if image is None:
                    raise ImageSkip("missing", "empty image cell")
                img = load_rgb(image)
            except ImageSkip as skip:
                report.skip(skip.reason, f"{row.pop('where')}: {skip}")
                continue
            row.pop("where")
            rows_out.append({**row, "image": writer.add_image(row["id"], img)})
        if not rows_out:
            raise DataError(f"no row of {src} could be converted:\n{report.table()}")
        if not has_split:
            splits = stratified_split([r["label"] for r in rows_out], seed, report=report)
            for row, split in zip(rows_out, splits, strict=True):
                row["split"] = split
        counts = Counter(r["label"] for r in rows_out)
        order = known if known is not None else sorted(counts, key=lambda k: (-counts[k], k))
        labels = make_labels([k for k in order if k in counts])
        info = _info("twitter-emoticon", rows_out, report, src=str(src), seed=seed,
                     max_side=max_side)
        writer.finish(rows_out, labels, info)
    return _result(out, rows_out, labels, report)


def _parse_table(path: Path, file_split: str | None, report: Report
                 ) -> tuple[Path, str | None, dict[str, str], list[TableRow]]:
    """Read one table and find its columns; an all-empty split column counts as absent."""
    columns, rows = read_table(path, report)
    roles = map_columns(columns, path)
    split_col = roles.get("split")
    if split_col and all(not r.cells.get(split_col, "").strip() for r in rows if not r.bad):
        del roles["split"]
        report.note(f"{path.name}: the {split_col!r} column is empty; made a stratified "
                    "split instead")
    return path, file_split, roles, rows


def _check_rows(parsed: list, has_split: bool, known: list[str] | None, root: Path,
                allow_outside: bool, report: Report) -> list[tuple[dict, Path | None]]:
    """Every check that needs no image decoding, cheapest first; returns the survivors."""
    keep: list[tuple[dict, Path | None]] = []
    seen: set[str] = set()
    for path, file_split, roles, rows in parsed:
        for row in rows:
            where = f"{path.name} line {row.line}"
            if row.bad:
                report.skip(row.bad, f"{where}: {row.cells.get('_detail', '')}".rstrip(": "))
                continue
            cells = row.cells
            row_id = cells.get(roles.get("id", ""), "").strip() or f"{path.stem}-{row.line}"
            where = f"{where} (id {row_id!r})"
            if row_id in seen:
                report.skip("duplicate-id", where)
                continue
            seen.add(row_id)
            split = file_split
            if has_split and not file_split:
                split = _row_split(cells.get(roles["split"], ""), where)
            label = resolve_label(cells.get(roles["label"], ""))
            if not label:
                report.skip("missing-label", where)
                continue
            if known is not None and label not in known:
                report.skip("unknown-label", f"{where}: {label!r}")
                continue
            text = clean_text(cells.get(roles["text"], ""), report, where)
            if text is None:
                continue
            image = _resolve_image(cells.get(roles["image"], ""), path.parent, root)
            if image is not None and not allow_outside and not _inside(image, root):
                report.skip("image-outside-folder", f"{where}: {image}")
                continue
            keep.append(({"id": row_id, "text": text, "label": label, "split": split,
                          "where": where}, image))
    return keep


def _row_split(value: str, where: str) -> str:
    split = _SPLIT_NAMES.get(value.strip().lower())
    if split is None:
        raise DataError(f"{where}: unknown split {value!r}; use train, val or test in every "
                        "row (or delete the split column to get a stratified 80/10/10 split)")
    return split


def _resolve_image(value: str, table_dir: Path, root: Path) -> Path | None:
    """The existing file an image cell names, or None when there is none."""
    value = value.strip().replace("\\", "/")
    if not value:
        return None
    rel = Path(value)
    bases = [table_dir, table_dir / "images", root, root / "images"]
    candidates = [rel] if rel.is_absolute() else [base / rel for base in dict.fromkeys(bases)]
    for cand in candidates:
        if cand.is_file():
            return cand
        if not cand.suffix:
            for ext in (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"):
                if cand.with_name(cand.name + ext).is_file():
                    return cand.with_name(cand.name + ext)
    return candidates[0]  # does not exist: load_rgb reports it as missing


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def fetch_twitter_emoticon(url: str, sha256: str, cache: str | Path) -> Path:
    """Download and safely extract an archive of the dataset; return the extracted folder."""
    cache = Path(cache)
    name = Path(url.split("?", 1)[0].rstrip("/")).name or "twitter-emoticon.archive"
    archive = download(url, cache / name, sha256)
    folder = extract_archive(archive, cache / f"extracted-{sha256.lower()[:16]}")
    inner = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder


# --------------------------------------------------------------------------- helpers

def _already(out: Path) -> ConvertResult:
    return ConvertResult(out, 0, {}, [], Report(), already=True)


def _info(source: str, rows: list[dict], report: Report, **options) -> dict:
    return {"source": source, "rows": len(rows), "options": options,
            "splits": dict(Counter(r["split"] for r in rows)),
            "skipped": dict(report.skips), "changed": dict(report.changes)}


def _result(out: Path, rows: list[dict], labels: list[Label], report: Report) -> ConvertResult:
    return ConvertResult(out, len(rows), dict(Counter(r["split"] for r in rows)), labels, report)


# --------------------------------------------------------------------------- CLI

def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``instagram`` and ``twitter-emoticon`` under ``python -m emolib data``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    common.add_argument("--max-side", type=int, default=MAX_SIDE,
                        help=f"downscale images to this longest side (default {MAX_SIDE})")
    common.add_argument("--force", action="store_true",
                        help="rebuild even if --out already holds a dataset")

    ig = subparsers.add_parser(
        "instagram", parents=[common], help="Instagram posts from the Hugging Face hub",
        description=f"Download {INSTAGRAM_REPO} (about 3.7 GB of parquet) and convert it "
                    "with the protocol of Barbieri et al. 2018: keep posts whose caption holds "
                    "emoji of one kind among the top-K, remove emoji from the text, label = "
                    "that emoji; stratified 80/10/10 split.")
    ig.add_argument("--out", type=Path, default=Path("data/instagram"),
                    help="dataset folder to write (default data/instagram)")
    ig.add_argument("--top-k", type=int, default=10, help="number of classes (default 10)")
    ig.add_argument("--max-posts", type=int, default=None,
                    help="stop after converting this many posts (default: all)")
    ig.add_argument("--parquet-dir", type=Path, default=None,
                    help="use parquet files already on disk instead of downloading")
    ig.add_argument("--cache-dir", type=Path, default=None,
                    help="Hugging Face cache folder for the download (default: HF_HOME)")
    ig.set_defaults(func=_cmd_instagram)

    tw = subparsers.add_parser(
        "twitter-emoticon", parents=[common], help="your copy of Multimodal-TwitterEmoticon",
        description="Convert a copy of the paper's dataset that you have: a folder with a "
                    "CSV/TSV/JSONL table (text, image path, label; optional id, split) and "
                    "the images, or an archive (zip/tar) at --url with its --sha256.")
    source = tw.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="src", type=Path, help="folder or table file")
    source.add_argument("--url", help="http(s) URL of a .zip or .tar.* archive")
    tw.add_argument("--sha256", help="SHA-256 of the archive (required with --url)")
    tw.add_argument("--out", type=Path, default=Path("data/twitter-emoticon"),
                    help="dataset folder to write (default data/twitter-emoticon)")
    tw.add_argument("--table", type=Path, default=None,
                    help="the table file, when the folder holds several")
    tw.add_argument("--labels", type=Path, default=None,
                    help="labels.json or a one-per-line list of the classes to keep")
    tw.set_defaults(func=_cmd_twitter)


def _run(convert) -> int:
    try:
        result = convert()
    except (DataError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _cmd_instagram(args: argparse.Namespace) -> int:
    def convert() -> ConvertResult:
        if is_complete(args.out) and not args.force:
            return _already(Path(args.out))
        folder = args.parquet_dir or fetch_instagram(args.cache_dir)
        return convert_instagram(folder, args.out, top_k=args.top_k, max_posts=args.max_posts,
                                 seed=args.seed, max_side=args.max_side, force=args.force)
    return _run(convert)


def _cmd_twitter(args: argparse.Namespace) -> int:
    def convert() -> ConvertResult:
        if is_complete(args.out) and not args.force:
            return _already(Path(args.out))
        src, inside_only = args.src, False
        if args.url:
            if not args.sha256:
                raise DataError("--url needs --sha256 HEX, the checksum of the archive you "
                                "were given (sha256sum FILE prints it)")
            cache = Path(args.out).with_name(f".{Path(args.out).name}.download")
            src, inside_only = fetch_twitter_emoticon(args.url, args.sha256, cache), True
        result = convert_twitter_emoticon(src, args.out, table=args.table,
                                          labels_file=args.labels, seed=args.seed,
                                          max_side=args.max_side, allow_outside=not inside_only,
                                          force=args.force)
        if args.url:  # converted: the archive and its extracted copy are no longer needed
            shutil.rmtree(cache, ignore_errors=True)
        return result
    return _run(convert)
