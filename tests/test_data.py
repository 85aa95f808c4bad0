import numpy as np
import pandas as pd
import pytest
import torch

from emolib.config import get_profile
from emolib.data import (
    BatchIterator,
    Collator,
    EmoticonDataset,
    build_cache,
    load_dataset,
    normalize_images,
)
from emolib.encoders import load_tokenizer
from emolib.layout import DataError
from emolib.text import normalize_tweet


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(get_profile("smoke").model)


@pytest.fixture
def broken_copy(tiny_synth, tmp_path):
    """The tiny dataset with two unreadable images planted."""
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("cache"))
    meta = pd.read_csv(root / "metadata.csv")
    (root / "images" / meta.at[0, "image"]).write_bytes(b"not an image")
    (root / "images" / meta.at[1, "image"]).unlink()
    return root


def test_tweet_normalisation_makes_emoji_readable_for_bert(tokenizer):
    text = normalize_tweet("@anna_99 lol 😂 https://t.co/xyz")
    assert text == "@user lol face with tears of joy http"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.unk_token_id in tokenizer("😂")["input_ids"]  # why we demojize


def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="data_download.sh synthetic"):
        load_dataset(tmp_path / "nope")


def test_dataset_and_collator_skip_unreadable_images(broken_copy, tokenizer):
    info = load_dataset(broken_copy)
    ds = EmoticonDataset(info, "train", image_size=32)
    collate = Collator(tokenizer, max_length=16)
    bad = set(pd.read_csv(broken_copy / "metadata.csv")["id"][:2])
    n_bad = int(ds.rows["id"].isin(bad).sum())
    loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate)
    total = 0
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (3, 32, 32)
        assert batch["pixel_values"].dtype == torch.float32
        assert batch["input_ids"].shape == batch["attention_mask"].shape
        total += len(batch["labels"])
    assert total == len(ds) - n_bad and collate.skipped == n_bad
    assert sum(ds.skipped.values()) == n_bad


def test_cache_matches_per_item_path_and_counts_skips(broken_copy, tokenizer):
    info = load_dataset(broken_copy)
    cache = build_cache(info, tokenizer, image_size=32, max_length=16, progress=False)
    assert cache.skipped == {"corrupt": 1, "missing": 1}
    assert len(cache) == len(info.frame) - 2
    assert cache.images.dtype == np.uint8
    # a second build reuses the files on disk and reports the same skips
    again = build_cache(info, tokenizer, image_size=32, max_length=16, progress=False)
    assert again.skipped == cache.skipped and len(again) == len(cache)
    # cached pixels equal the per-item transform (same decode + resize)
    ds = EmoticonDataset(info, "train", image_size=32)
    item = next(x for x in (ds[i] for i in range(len(ds))) if x is not None)
    pos = int(np.flatnonzero(cache.ids == item["id"])[0])
    batch = BatchIterator(cache, np.array([pos]), 1).batch(np.array([pos]))
    cached = normalize_images(batch["pixel_values"])[0]
    assert torch.allclose(cached, item["image"], atol=2 / 255 * 2 + 1e-6)


def test_batches_shuffle_per_epoch_deterministically_and_shard(tiny_synth, tokenizer):
    cache = build_cache(load_dataset(tiny_synth), tokenizer, 32, 16, progress=False)
    idx = cache.indices("train")

    def ids(it):
        return [tuple(b["labels"].tolist()) for b in it]

    a = BatchIterator(cache, idx, 8, shuffle=True, seed=1)
    b = BatchIterator(cache, idx, 8, shuffle=True, seed=1)
    assert ids(a) == ids(b)
    b.set_epoch(1)
    assert ids(a) != ids(b)
    shards = [BatchIterator(cache, idx, 4, shuffle=True, seed=1, rank=r, world_size=2)
              for r in range(2)]
    orders = [s._order() for s in shards]
    assert len(orders[0]) == len(orders[1])
    assert not set(orders[0]) & set(orders[1])
    whole = BatchIterator(cache, idx, 4, shuffle=True, seed=1)._order()
    assert set(orders[0]) | set(orders[1]) == set(whole[: len(whole) - len(whole) % 2])
    batch = next(iter(a))
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"][:, -1].any() and width <= 16  # padding trimmed


def test_empty_split_is_a_clear_error(tiny_synth, tokenizer):
    cache = build_cache(load_dataset(tiny_synth), tokenizer, 32, 16, progress=False)
    with pytest.raises(DataError, match="no usable samples"):
        BatchIterator(cache, np.array([], dtype=int), 4)
