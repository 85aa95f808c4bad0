"""Loading a canonical dataset for training.

:func:`load_dataset` reads and checks ``metadata.csv`` and ``labels.json``; rows that cannot
be used are counted under a reason and left out, never silently trained on.
:func:`build_cache` decodes and resizes every image once into a memory-mapped uint8 array
and tokenizes every text once (both with the one :class:`~emolib.preprocess.Preprocessor`);
:class:`BatchIterator` then serves batches by indexing tensors. :class:`EmoticonDataset`
is the classic per-item ``Dataset`` most tutorials use (decode on every read), kept to
show the difference.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from emolib.images import ImageSkip
from emolib.layout import DataError, Label, read_labels, read_metadata
from emolib.preprocess import Preprocessor
from emolib.text import bare_emoji, remove_emoji

log = logging.getLogger(__name__)


@dataclass
class DatasetInfo:
    """A checked canonical dataset: its folder, classes and usable rows (with int ``y``)."""

    root: Path
    labels: list[Label]
    frame: pd.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out
    label_emoji_rows: int = 0  # rows whose text held an emoji of the label set (removed)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def load_dataset(root: str | Path) -> DatasetInfo:
    """Read and check a dataset; rows that cannot be used are counted and left out.

    Skipped: an image path that leaves ``root/images`` (``..``, absolute, or a symlink
    pointing outside; such files are never opened), empty text, and text that is empty
    once the label set's emoji are removed.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; create one with "
                        "`./data_download.sh synthetic` or `python -m emolib data synth`")
    labels = read_labels(root / "labels.json")
    if len(labels) < 2:
        raise DataError(f"{root / 'labels.json'} lists {len(labels)} class; a classifier "
                        "needs at least 2")
    frame = read_metadata(root / "metadata.csv", labels)
    images = (root / "images").resolve()
    inside = frame["image"].map(lambda name: (images / name).resolve().is_relative_to(images))
    label_set = frozenset(bare_emoji(lab.emoji) for lab in labels)
    cleaned = frame["text"].map(lambda t: remove_emoji(t, label_set))
    reasons = pd.Series("", index=frame.index)
    reasons[cleaned.str.strip() == ""] = "empty-after-label-emoji"
    reasons[frame["text"].str.strip() == ""] = "empty-text"
    reasons[~inside] = "outside-dataset"
    skipped = dict(Counter(reasons[reasons != ""]))
    for reason, count in sorted(skipped.items()):
        ids = frame.loc[reasons == reason, "id"].head(3).tolist()
        log.warning("%s: left out %d row(s) (%s), e.g. %s", root, count, reason, ids)
    label_rows = int(((cleaned != frame["text"]) & (reasons == "")).sum())
    keep = frame[reasons == ""].reset_index(drop=True)
    return DatasetInfo(root, labels, keep, skipped, label_rows)


# ---------------------------------------------------------------- the cached path
@dataclass
class TensorCache:
    """Every usable post of a dataset as tensors, ready for indexing."""

    ids: np.ndarray
    images: np.ndarray            # uint8 (M, 3, S, S), memory-mapped; M >= N
    rows: np.ndarray              # row of each usable post in `images`
    input_ids: torch.Tensor       # int32 (N, L)
    attention_mask: torch.Tensor  # int8 (N, L)
    labels: torch.Tensor          # int64 (N,); -100 = label hidden from training
    splits: np.ndarray            # str (N,)
    skipped: dict[str, int] = field(default_factory=dict)
    text_features: torch.Tensor | None = None  # (N, H): a frozen text encoder's output

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def __len__(self) -> int:
        return len(self.ids)


def _decode(pre: Preprocessor, path: Path) -> np.ndarray | str:
    try:
        return pre.image(path)
    except ImageSkip as skip:
        return skip.reason


def build_cache(info: DatasetInfo, pre: Preprocessor, progress: bool = True,
                workers: int = 4) -> TensorCache:
    """Decode+resize every image once (kept in ``root/cache/``) and tokenize every text."""
    frame = info.frame
    key = hashlib.sha1("\n".join(frame["image"]).encode()).hexdigest()[:10]
    cache_dir = info.root / "cache"
    cache_dir.mkdir(exist_ok=True)
    img_file = cache_dir / f"images_{pre.image_size}_{key}.npy"
    skip_file = cache_dir / f"skipped_{pre.image_size}_{key}.csv"
    if img_file.is_file() and skip_file.is_file():
        reasons = pd.read_csv(skip_file, dtype=str, keep_default_na=False)
    else:
        tmp = cache_dir / f"tmp_{img_file.name}"
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                           shape=(len(frame), 3, pre.image_size,
                                                  pre.image_size))
        paths = [info.root / "images" / name for name in frame["image"]]
        bad = []
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda p: _decode(pre, p), paths, chunksize=64)
            for i, result in enumerate(tqdm(results, total=len(paths), disable=not progress,
                                            desc=f"decode images @{pre.image_size}px")):
                if isinstance(result, str):
                    bad.append((frame.at[i, "id"], result))
                else:
                    images[i] = result
        images.flush()
        del images
        reasons = pd.DataFrame(bad, columns=["id", "reason"])
        reasons.to_csv(skip_file, index=False)
        tmp.replace(img_file)
    counts = dict(Counter(reasons["reason"]))
    for reason, count in sorted(counts.items()):
        log.warning("skipped %d image(s): %s", count, reason)
    keep = np.flatnonzero(~frame["id"].isin(set(reasons["id"])).to_numpy())
    if not len(keep):
        raise DataError(f"no usable image in {info.root / 'images'} "
                        f"({len(frame)} rows; skipped: {counts})")
    input_ids, attention_mask = pre.tokenize(frame["text"].iloc[keep].tolist())
    return TensorCache(
        ids=frame["id"].to_numpy()[keep], images=np.load(img_file, mmap_mode="r"), rows=keep,
        input_ids=input_ids, attention_mask=attention_mask,
        labels=torch.as_tensor(frame["y"].to_numpy()[keep], dtype=torch.long),
        splits=frame["split"].to_numpy()[keep], skipped=counts)


class BatchIterator:
    """Batches of cached tensors, reshuffled each epoch from ``(seed, epoch)``.

    With ``world_size > 1`` each rank takes every ``world_size``-th sample of the same
    permutation (as ``DistributedSampler`` does), so ranks see disjoint equal shares.
    Padding columns that no text in the batch uses are trimmed before the copy; with
    ``trim=False`` every batch keeps the cache's full width (fixed shapes, for torch.compile).
    """

    def __init__(self, cache: TensorCache, indices: np.ndarray, batch_size: int,
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 trim: bool = True):
        if len(indices) == 0:
            raise DataError("no usable samples to iterate over")
        self.cache, self.indices = cache, np.asarray(indices)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)
        self.trim = trim
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        order = self.indices
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = order[rng.permutation(len(order))]
        if self.world_size > 1:
            usable = len(order) - len(order) % self.world_size
            order = order[:usable][self.rank::self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self.indices) // self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self._order()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        pin = self.device.type == "cuda"
        for start in range(0, stop, self.batch_size):
            yield self.batch(order[start:start + self.batch_size], pin=pin)

    def batch(self, idx: np.ndarray, pin: bool = False) -> dict[str, torch.Tensor]:
        c = self.cache
        mask = c.attention_mask[idx]
        width = max(int(mask.sum(1).max()), 1) if self.trim else mask.shape[1]
        # one copy of each image, from the memmap straight into (pinned) host memory, read in
        # row order (fastest from disk): one copy where gather, reorder and pin made three
        rows = c.rows[idx]
        images = torch.empty((len(idx), *c.images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        dst = images.numpy()
        for k in np.argsort(rows, kind="stable"):
            dst[k] = c.images[rows[k]]
        small = {"input_ids": c.input_ids[idx, :width].long(),
                 "attention_mask": mask[:, :width].long(), "labels": c.labels[idx]}
        if c.text_features is not None:
            small["text_features"] = c.text_features[idx]
        if pin:
            small = {k: v.pin_memory() for k, v in small.items()}
        out = {"pixel_values": images, **small}
        return {k: v.to(self.device, non_blocking=True) for k, v in out.items()}


# ---------------------------------------------------------------- the per-item path
class EmoticonDataset(torch.utils.data.Dataset):
    """Decodes each image on every read; ``None`` for an unusable one (the collator skips)."""

    def __init__(self, info: DatasetInfo, split: str, pre: Preprocessor):
        self.info, self.pre = info, pre
        self.rows = info.split(split).reset_index(drop=True)
        self.skipped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict | None:
        row = self.rows.iloc[i]
        try:
            image = torch.from_numpy(self.pre.image(self.info.root / "images" / row["image"])
                                     .copy())
        except ImageSkip as skip:
            self.skipped[skip.reason] += 1
            return None
        return {"text": row["text"], "image": image, "label": int(row["y"])}


@dataclass
class Collator:
    """Tokenizes a batch of texts and stacks images; drops ``None`` items, counting them."""

    pre: Preprocessor
    skipped: int = 0

    def __call__(self, items: list[dict | None]) -> dict[str, torch.Tensor]:
        good = [item for item in items if item is not None]
        self.skipped += len(items) - len(good)
        if not good:
            return {}
        ids, mask = self.pre.tokenize([item["text"] for item in good])
        width = max(int(mask.sum(1).max()), 1)
        return {"input_ids": ids[:, :width].long(), "attention_mask": mask[:, :width].long(),
                "pixel_values": torch.stack([item["image"] for item in good]),
                "labels": torch.tensor([item["label"] for item in good])}
