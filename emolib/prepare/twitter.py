"""A copy of the paper's Multimodal-TwitterEmoticon data that the user has: a folder with a
table (text, image and label columns; id and split optional) and the images, or a tar archive
of one at a URL with its SHA-256 (downloaded by pooch, unpacked with safety checks)."""

import io
import os
import shutil
import sys
import tarfile
import zlib
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from emolib.layout import SPLITS, DataError, csv_records, read_labels
from emolib.prepare.staging import MAX_SIDE, Report, build, clean_text, resolve_label

MAX_MEMBERS, MAX_BYTES = 200_000, 50 * 2**30  # more is refused as a possible archive bomb


def download(url: str, dest: Path, sha256: str, progress: bool = True) -> Path:
    """``url`` saved as ``dest`` unless ``dest`` has this SHA-256 already; pooch keeps the
    file only if it matches (and cannot resume a broken transfer: the next run starts over)."""
    import pooch

    try:
        return Path(pooch.retrieve(url, f"sha256:{sha256.lower()}", fname=dest.name,
                                   path=dest.parent, progressbar=progress and sys.stderr.isatty()))
    except ValueError as err:  # a checksum mismatch or a URL pooch cannot fetch
        raise DataError(f"{url}: {err} Check the URL and the --sha256 you were given") from err


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a tar archive into ``dest``, built beside it; tarfile's ``data`` filter (PEP 706)
    refuses absolute and ``..`` paths, links leading out and devices; caps refuse bombs."""
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
        if len(members) > MAX_MEMBERS or sum(m.size for m in members) > MAX_BYTES:
            raise DataError(f"{archive.name} has more than {MAX_MEMBERS:,} members or unpacks "
                            f"to more than {MAX_BYTES:,} bytes; refusing a possible archive bomb")
        shutil.unpack_archive(archive, tmp, "tar", filter="data")
        os.replace(tmp, dest)
    except tarfile.FilterError as err:
        raise DataError(f"{archive.name}: unsafe member ({err}); refusing this archive") from err
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"{archive.name} is damaged or not a tar archive; give a .tar, .tar.gz,"
                        " .tar.bz2 or .tar.xz file (unpack a zip and use --from)") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a UTF-8 .csv or .tsv table by lower-cased column name, or one line naming the
    file, row and fix (csv, not pandas: one loop checks every row's width and split)."""
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise DataError(f"{path}: give the table as a .csv or .tsv file (JSON Lines converts "
                        "with pandas.read_json(path, lines=True).to_csv(...))")
    try:
        text = (raw := path.read_bytes()).decode("utf-8-sig")  # with or without a BOM
    except UnicodeDecodeError as err:
        raise DataError(f"{path} line {raw[:err.start].count(10) + 1}: bytes that are not UTF-8"
                        f" ({raw[err.start:err.end]!r}); save the file as UTF-8") from None
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    records = [row for row in csv_records(io.StringIO(text), path, sep) if row]  # no blanks
    if len(records) < 2:
        raise DataError(f"{path} has a header but no rows; add one row per example" if records
                        else f"{path} is empty; it needs a header line such as "
                        "id,text,image,label,split and one row per example")
    header, rows = [name.strip().lower() for name in records[0]], records[1:]
    if missing := [name for name in ("text", "image", "label") if name not in header]:
        raise DataError(f"{path}: no {' / '.join(missing)} column (found: {', '.join(header)});"
                        " name the columns id,text,image,label,split in the header line (id and"
                        " split are optional)")
    for n, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise DataError(f"{path} row {n}: {len(row)} fields, the header has {len(header)}; "
                            f"quote a field that holds {sep!r}, or fill in the missing ones")
        if "split" in header and row[header.index("split")].strip().lower() not in SPLITS:
            raise DataError(f"{path} row {n}: unknown split {row[header.index('split')]!r}; use "
                            "train, val or test in every row (or delete the split column)")
    return [dict(zip(header, row, strict=True)) for row in rows]


def find_image(value: str, bases: list[Path], root: Path) -> Path | str:
    """The file an image cell names, relative to one of ``bases``, or why not: ``missing``, or
    ``outside-dataset`` if it resolves (symlinks followed) outside ``root``: never opened."""
    value = value.strip().replace("\\", "/")
    for base in bases if value.isprintable() else []:  # a NUL or control character: no file
        real = Path(os.path.realpath(base / value))  # an absolute value ignores its base
        if not real.is_relative_to(root):
            return "outside-dataset"
        if os.path.isfile(real):  # os.path: False, not an error, for a long name
            return real
    return "missing"


def convert_twitter_emoticon(src: str | Path, out: str | Path, *, table: Path | None = None,
                             labels_file: Path | None = None, seed: int = 0,
                             max_side: int = MAX_SIDE, force: bool = False,
                             progress: bool = True) -> Report:
    """Convert ``src`` (a folder, or its table): image paths are relative to the table's folder
    or ``src`` (or their images/) and stay inside ``src``; the classes are those of
    ``labels_file`` or of a labels.json beside the table, else every label found."""
    src, report = Path(src).expanduser(), Report(Path(out).expanduser())
    root = (src if src.is_dir() else src.parent).resolve()
    tables = [Path(table)] if table else [src] if src.is_file() else sorted(  # also nested
        p for p in src.rglob("*") if p.suffix.lower() in (".csv", ".tsv") and p.name[0] != ".")
    if len(tables) != 1:
        found = ", ".join(str(p.relative_to(src)) for p in tables) if src.exists() else "no folder"
        raise DataError(f"{src} needs one .csv or .tsv table; found: {found or 'none'}. Pass "
                        "--table FILE")
    path, rows = tables[0], read_table(tables[0])
    if labels_file is None and (path.parent / "labels.json").is_file():
        labels_file = path.parent / "labels.json"
    known = labels_file and [resolve_label(lab.emoji) for lab in read_labels(labels_file)]

    def write(tmp: Path):
        seen, bases = set(), [path.parent, path.parent / "images", root, root / "images"]
        for n, row in enumerate(tqdm(rows, unit="row", disable=None if progress else True), 2):
            row_id = row.get("id", "").strip() or f"row-{n}"
            where, label = f"{path.name} row {n} (id {row_id!r})", resolve_label(row["label"])
            reason = ("duplicate-id" if row_id in seen else "missing-label" if not label
                      else "unknown-label" if known and label not in known else "")
            seen.add(row_id)
            text = None if reason else clean_text(row["text"], report, where)
            image = find_image(row["image"], bases, root) if text else None
            if reason:
                report.skip(reason, where)
            elif isinstance(image, str):
                report.skip(image, f"{where}: {row['image']!r}")
            elif text:
                split = row["split"].strip().lower() if "split" in row else None  # None: drawn
                report.keep({"id": row_id, "text": text, "label": label, "split": split},
                            image, where, tmp, max_side)
        counts = Counter(row["label"] for row in report.rows)
        return report.finish(known or sorted(counts, key=lambda k: (-counts[k], k)), seed,
                             source="twitter-emoticon", src=str(src), max_side=max_side)

    build(report.out, write, force)
    return report
