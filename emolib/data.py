"""Loading a canonical dataset for training.

Two paths over the same files:

* :class:`EmoticonDataset` + :class:`Collator`: a classic torch ``Dataset`` that decodes
  each image with PIL and transforms it with torchvision v2 every time it is read.
  Good for exploring; this is what most tutorials do.
* :func:`build_cache` + :class:`BatchIterator`: decode and resize every image once into
  a memory-mapped uint8 array, tokenize every text once, then serve batches by indexing
  tensors. This is what training uses.

Unreadable images never crash an epoch: they are counted by reason and skipped.
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
from PIL import Image
from torchvision.transforms import v2
from tqdm import tqdm

from emolib.images import ImageSkip, load_rgb
from emolib.layout import DataError, Label, read_labels, read_metadata
from emolib.text import normalize_tweet

log = logging.getLogger(__name__)

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass
class DatasetInfo:
    """A validated canonical dataset: its folder, classes and metadata (with int ``y``)."""

    root: Path
    labels: list[Label]
    frame: pd.DataFrame

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def load_dataset(root: str | Path) -> DatasetInfo:
    """Read and validate ``root/metadata.csv`` and ``root/labels.json``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; create one with "
                        "`./data_download.sh synthetic` or `python -m emolib data synth`")
    labels = read_labels(root / "labels.json")
    frame = read_metadata(root / "metadata.csv", labels)
    return DatasetInfo(root, labels, frame.reset_index(drop=True))


def image_transform(image_size: int, train: bool = False) -> v2.Compose:
    """PIL RGB image -> normalised float tensor (3, S, S)."""
    steps: list = [v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGE_MEAN, IMAGE_STD)]
    return v2.Compose(steps)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> normalised float, on whatever device the batch lives.

    Equal statistics for every channel are applied as Python scalars: a tensor built from a
    list on the GPU is a blocking host-to-device copy, a host sync in every training step.
    """
    if len(set(IMAGE_MEAN)) == 1 and len(set(IMAGE_STD)) == 1:
        return (images.float() / 255.0 - IMAGE_MEAN[0]) / IMAGE_STD[0]
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class EmoticonDataset(torch.utils.data.Dataset):
    """Per-item decoding: returns ``None`` for an unusable image (the collator skips it)."""

    def __init__(self, info: DatasetInfo, split: str, image_size: int, train: bool = False):
        self.info = info
        self.rows = info.split(split).reset_index(drop=True)
        self.transform = image_transform(image_size, train)
        self.skipped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict | None:
        row = self.rows.iloc[i]
        try:
            img = load_rgb(self.info.root / "images" / row["image"])
        except ImageSkip as skip:
            self.skipped[skip.reason] += 1
            log.warning("skipping %s: %s", row["id"], skip)
            return None
        return {"id": row["id"], "text": normalize_tweet(row["text"]),
                "image": self.transform(img), "label": int(row["y"])}


@dataclass
class Collator:
    """Tokenizes a batch of texts and stacks images; drops ``None`` items, counting them."""

    tokenizer: object
    max_length: int
    skipped: int = 0

    def __call__(self, items: list[dict | None]) -> dict[str, torch.Tensor]:
        good = [item for item in items if item is not None]
        self.skipped += len(items) - len(good)
        if not good:
            return {}
        tokens = self.tokenizer([item["text"] for item in good], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                "pixel_values": torch.stack([item["image"] for item in good]),
                "labels": torch.tensor([item["label"] for item in good])}


# ---------------------------------------------------------------- the cached path
@dataclass
class TensorCache:
    """Every usable post of a dataset as tensors, ready for indexing."""

    ids: np.ndarray
    images: np.ndarray            # uint8 (M, 3, S, S), memory-mapped; M >= N
    rows: np.ndarray              # row of each usable post in `images`
    input_ids: torch.Tensor       # int32 (N, L)
    attention_mask: torch.Tensor  # int8 (N, L)
    labels: torch.Tensor          # int64 (N,)
    splits: np.ndarray            # str (N,)
    skipped: dict[str, int] = field(default_factory=dict)
    text_features: torch.Tensor | None = None  # float32 (N, L, H): emolib.frozen_features

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def __len__(self) -> int:
        return len(self.ids)


def _decode_resized(path: Path, size: int) -> np.ndarray | str:
    try:
        img = load_rgb(path)
    except ImageSkip as skip:
        return skip.reason
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)



def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise and tokenize texts, padded to ``max_length``."""
    tokens = tokenizer([normalize_tweet(t) for t in texts], padding="max_length",
                       truncation=True, max_length=max_length, return_tensors="pt")
    return tokens["input_ids"].to(torch.int32), tokens["attention_mask"].to(torch.int8)


def build_cache(info: DatasetInfo, tokenizer, image_size: int, max_length: int,
                progress: bool = True, workers: int = 4) -> TensorCache:
    """Decode+resize every image once (kept in ``root/cache/``) and tokenize every text."""
    meta_hash = hashlib.sha1((info.root / "metadata.csv").read_bytes()).hexdigest()[:10]
    cache_dir = info.root / "cache"
    cache_dir.mkdir(exist_ok=True)
    img_file = cache_dir / f"images_{image_size}_{meta_hash}.npy"
    ok_file = cache_dir / f"valid_{image_size}_{meta_hash}.npy"
    frame = info.frame
    if img_file.is_file() and ok_file.is_file():
        valid = np.load(ok_file)
        reasons = Counter()
        skipped_file = cache_dir / f"skipped_{image_size}_{meta_hash}.csv"
        if skipped_file.is_file():
            reasons.update(pd.read_csv(skipped_file)["reason"].tolist())
    else:
        images = np.lib.format.open_memmap(
            cache_dir / f"tmp_{img_file.name}", mode="w+", dtype=np.uint8,
            shape=(len(frame), 3, image_size, image_size))
        valid = np.zeros(len(frame), dtype=bool)
        reasons: Counter[str] = Counter()
        skipped_rows = []
        paths = [info.root / "images" / name for name in frame["image"]]
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda p: _decode_resized(p, image_size), paths, chunksize=64)
            for i, result in enumerate(tqdm(results, total=len(paths), disable=not progress,
                                            desc=f"decode images @{image_size}px")):
                if isinstance(result, str):
                    reasons[result] += 1
                    skipped_rows.append((frame.at[i, "id"], result))
                else:
                    images[i] = result
                    valid[i] = True
        images.flush()
        del images
        np.save(ok_file, valid)
        pd.DataFrame(skipped_rows, columns=["id", "reason"]).to_csv(
            cache_dir / f"skipped_{image_size}_{meta_hash}.csv", index=False)
        (cache_dir / f"tmp_{img_file.name}").replace(img_file)
    for reason, count in sorted(reasons.items()):
        log.warning("skipped %d image(s): %s", count, reason)
    if not valid.any():
        raise DataError(f"no usable image in {info.root / 'images'}: {dict(reasons)}")
    keep = np.flatnonzero(valid)
    images = np.load(img_file, mmap_mode="r")
    input_ids, attention_mask = tokenize(tokenizer, frame["text"].tolist(), max_length)
    return TensorCache(
        ids=frame["id"].to_numpy()[keep],
        images=images, rows=keep,
        input_ids=input_ids[keep], attention_mask=attention_mask[keep],
        labels=torch.as_tensor(frame["y"].to_numpy()[keep], dtype=torch.long),
        splits=frame["split"].to_numpy()[keep], skipped=dict(reasons),
    )


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
            raise DataError("this split has no usable samples")
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
            idx = order[start:start + self.batch_size]
            yield self.batch(idx, pin=pin)

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
        small = {
            "input_ids": c.input_ids[idx, :width].long(),
            "attention_mask": mask[:, :width].long(),
            "labels": c.labels[idx],
        }
        if c.text_features is not None:
            small["text_features"] = c.text_features[idx, :width]
        if pin:
            small = {k: v.pin_memory() for k, v in small.items()}
        out = {"pixel_values": images, **small}
        return {k: v.to(self.device, non_blocking=True) for k, v in out.items()}
