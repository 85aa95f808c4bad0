"""A copy of the paper's Multimodal-TwitterEmoticon data that the user has (a folder, a
table file, or an archive at a URL with its SHA-256), converted into the canonical layout.
"""

import os
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from emolib.images import MAX_SIDE, ImageSkip, load_rgb
from emolib.layout import DataError, read_labels
from emolib.prepare.fetch import download, extract
from emolib.prepare.rows import Report, clean_text, finish, resolve_label, save_image
from emolib.prepare.staging import build, needs_build
from emolib.prepare.tables import SPLIT_NAMES, find_tables, map_columns, read_table

IMAGE_EXTS = ("", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")


def find_image(value: str, bases: list[Path], root: Path) -> Path | str:
    """The file an image cell names, or why not: ``missing`` or ``outside-dataset``.

    Tried in each base folder, also with an image extension added. The first path that
    exists decides: resolved (symlinks followed), it must lie inside ``root``. So a file
    outside the dataset may be looked at (stat) but is never opened.
    """
    value = value.strip().replace("\\", "/")
    names = [value] if Path(value).suffix else [value + ext for ext in IMAGE_EXTS]
    ok = value and value.isprintable()  # a NUL or a control character names no file
    paths = [base / name for base in bases for name in names] if ok else []
    for path in paths:  # an absolute name ignores its base
        if os.path.exists(path):  # os.path: False, not an error, for a link loop or long name
            real = Path(os.path.realpath(path))
            return real if real.is_relative_to(root) else "outside-dataset"
    inside = any(Path(os.path.realpath(path)).is_relative_to(root) for path in paths)
    return "missing" if inside or not paths else "outside-dataset"


def convert_twitter_emoticon(src: str | Path, out: str | Path, *,
                             table: str | Path | None = None,
                             labels_file: str | Path | None = None, seed: int = 0,
                             max_side: int = MAX_SIDE, force: bool = False,
                             progress: bool = True) -> Report:
    """Convert a folder (or table file) with text, image-path and label columns into ``out``.

    Image paths are relative to the table's folder, its ``images/``, or the dataset folder,
    and must stay inside the dataset folder. The classes kept, in order, are those of
    ``labels_file`` or the folder's labels.json; otherwise every label, most frequent first.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    report = Report(out)
    if not needs_build(out, force):
        return report
    tables = [(Path(table), None)] if table else find_tables(src)
    root = (src if src.is_dir() else src.parent).resolve()
    labels_path = Path(labels_file) if labels_file else root / "labels.json"
    if labels_file and not labels_path.is_file():
        raise DataError(f"--labels {labels_path} does not exist")
    known = _classes(labels_path) if labels_path.is_file() else None
    posts = _check_rows(tables, known, root, report)

    def write(tmp: Path):
        rows, taken = [], set()
        for row, image, where in tqdm(posts, desc="images", unit="img",
                                      disable=None if progress else True):
            try:
                img = load_rgb(image)
            except ImageSkip as skip:
                report.skip(skip.reason, f"{where}: {skip}")
                continue
            rows.append({**row, "image": save_image(tmp, row["id"], img, max_side, taken)})
        counts = Counter(row["label"] for row in rows)
        order = known if known is not None else sorted(counts, key=lambda k: (-counts[k], k))
        return finish(report, rows, order, seed, source="twitter-emoticon", src=str(src),
                      max_side=max_side)

    build(out, write)
    return report


def _check_rows(tables: list[tuple[Path, str | None]], known: list[str] | None, root: Path,
                report: Report) -> list[tuple[dict, Path, str]]:
    """Every check that needs no image decoding: the rows that pass, with image and place."""
    parsed = []
    for path, file_split in tables:
        frame = read_table(path)
        roles = map_columns(list(frame.columns), path)
        if "split" in roles and not frame[roles["split"]].str.strip().any():
            report.notes.append(f"{path.name}: the {roles.pop('split')!r} column is empty; "
                                "made a stratified split instead")
        parsed.append((path, file_split, frame, roles))
    has_split = all(file_split or "split" in roles for _, file_split, _, roles in parsed)
    keep, seen = [], set()
    for path, file_split, frame, roles in parsed:
        bases = [path.parent, path.parent / "images", root, root / "images"]
        for i, cells in enumerate(frame.to_dict("records")):
            cell = {role: cells[column] for role, column in roles.items()}
            row_id = cell.get("id", "").strip() or f"{path.stem}-{i + 2}"
            where = f"{path.name} row {i + 2} (id {row_id!r})"
            split = file_split or (_split(cell["split"], where) if has_split else None)
            label = resolve_label(cell["label"])
            reason = ("duplicate-id" if row_id in seen else "missing-label" if not label
                      else "unknown-label" if known is not None and label not in known else "")
            seen.add(row_id)
            if reason:
                report.skip(reason, where)
                continue
            text = clean_text(cell["text"], report, where)
            image = find_image(cell["image"], bases, root) if text else None
            if isinstance(image, str):
                report.skip(image, f"{where}: {cell['image']!r}")
            elif text:
                keep.append(({"id": row_id, "text": text, "label": label, "split": split},
                             image, where))
    return keep


def _classes(path: Path) -> list[str]:
    """The classes of a labels.json, or of a text file with one class per line."""
    if path.suffix.lower() == ".json":
        return [resolve_label(lab.emoji) for lab in read_labels(path)]
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [resolve_label(line) for line in lines if line.strip()]


def _split(value: str, where: str) -> str:
    if value.strip().lower() not in SPLIT_NAMES:
        raise DataError(f"{where}: unknown split {value!r}; use train, val or test in every "
                        "row (or delete the split column to get a stratified 80/10/10 split)")
    return SPLIT_NAMES[value.strip().lower()]


def fetch_twitter_emoticon(url: str, sha256: str, cache: str | Path) -> Path:
    """Download and safely extract an archive of the dataset; return the folder inside."""
    cache, sha256 = Path(cache), sha256.strip().lower()
    name = Path(url.split("?", 1)[0].rstrip("/")).name or "twitter-emoticon.archive"
    folder = extract(download(url, cache / name, sha256), cache / f"extracted-{sha256[:16]}")
    inner = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return inner[0] if len(inner) == 1 and inner[0].is_dir() else folder
