"""Loading a dataset: one preprocessing path, the tensor cache, and bad input kept out."""

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from emolib.cli import main
from emolib.config import get_profile
from emolib.data import BatchIterator, Collator, EmoticonDataset, build_cache, load_dataset
from emolib.encoders import IMAGE_MEAN, IMAGE_STD, load_tokenizer, normalize_images
from emolib.layout import DataError
from emolib.preprocess import Preprocessor
from emolib.text import normalize_tweet


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(get_profile("smoke").model)


def pre_for(info, tokenizer, size=32, length=16):
    return Preprocessor.for_labels(tokenizer, size, length, [lab.emoji for lab in info.labels])


def copy_of(tiny_synth, tmp_path, name="ds"):
    root = tmp_path / name
    shutil.copytree(tiny_synth, root, ignore=shutil.ignore_patterns("cache"))
    return root


def edit_rows(root, **columns):
    """Set ``column -> {row: value}`` in metadata.csv."""
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    for column, values in columns.items():
        for row, value in values.items():
            meta.at[row, column] = value
    meta.to_csv(root / "metadata.csv", index=False)
    return meta


def test_tweet_normalisation_makes_emoji_readable_for_bert(tokenizer):
    text = normalize_tweet("@anna_99 lol 😂 https://t.co/xyz")
    assert text == "@user lol face with tears of joy http"
    assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id in tokenizer("😂")["input_ids"]  # why we demojize


def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="data_download.sh synthetic"):
        load_dataset(tmp_path / "nope")


# ---------------------------------------------------------------- one preprocessing path
@pytest.mark.parametrize("size", [24, 32, 48])
def test_live_preprocessing_equals_the_cached_tensors(tiny_synth, tmp_path, tokenizer, size):
    """Non-square images at several sizes: the cache holds exactly what predict computes."""
    root = copy_of(tiny_synth, tmp_path)
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(40, 23), (17, 61), (90, 90), (33, 32)]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / meta.at[i, "image"])
    info = load_dataset(root)
    pre = pre_for(info, tokenizer, size)
    cache = build_cache(info, pre, progress=False)
    for i in range(4):
        live = pre([meta.at[i, "text"]], [root / "images" / meta.at[i, "image"]])
        pos = int(np.flatnonzero(cache.ids == meta.at[i, "id"])[0])
        cached = BatchIterator(cache, np.array([pos]), 1).batch(np.array([pos]))
        assert live["pixel_values"].shape == (1, 3, size, size)
        assert torch.equal(live["pixel_values"], cached["pixel_values"])
        width = live["input_ids"].shape[1]
        assert torch.equal(live["input_ids"], cached["input_ids"][:, :width])
    assert len(list((root / "cache").glob(f"images_{size}_*.npy"))) == 1


def test_one_cache_per_image_size(tiny_synth, tmp_path, tokenizer):
    root = copy_of(tiny_synth, tmp_path)
    info = load_dataset(root)
    a = build_cache(info, pre_for(info, tokenizer, 24), progress=False)
    b = build_cache(info, pre_for(info, tokenizer, 32), progress=False)
    assert a.images.shape[-1] == 24 and b.images.shape[-1] == 32
    assert len(list((root / "cache").glob("images_*.npy"))) == 2


def test_normalisation_is_what_the_vit_checkpoints_expect():
    # google/vit-base-patch16-224-in21k: image_mean = image_std = [0.5, 0.5, 0.5]
    assert (IMAGE_MEAN, IMAGE_STD) == (0.5, 0.5)
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    assert normalize_images(x).flatten().tolist() == pytest.approx([-1.0, -0.6, 1.0])


def test_per_item_path_equals_the_cache_and_skips_bad_images(tiny_synth, tmp_path, tokenizer):
    root = copy_of(tiny_synth, tmp_path)
    meta = pd.read_csv(root / "metadata.csv")
    (root / "images" / meta.at[0, "image"]).write_bytes(b"not an image")
    (root / "images" / meta.at[1, "image"]).unlink()
    info = load_dataset(root)
    pre = pre_for(info, tokenizer)
    cache = build_cache(info, pre, progress=False)
    assert cache.skipped == {"corrupt": 1, "missing": 1} and len(cache) == len(info.frame) - 2
    again = build_cache(info, pre, progress=False)  # from disk: same skips
    assert again.skipped == cache.skipped and len(again) == len(cache)
    ds, collate = EmoticonDataset(info, "train", pre), Collator(pre)
    n_bad = int(ds.rows["id"].isin(set(meta["id"][:2])).sum())
    total = 0
    for batch in torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate):
        assert batch["pixel_values"].dtype == torch.uint8
        total += len(batch["labels"])
    assert total == len(ds) - n_bad and collate.skipped == n_bad == sum(ds.skipped.values())
    row = ds.rows.iloc[-1]
    item = ds[len(ds) - 1]
    pos = int(np.flatnonzero(cache.ids == row["id"])[0])
    assert torch.equal(item["image"], torch.from_numpy(np.array(cache.images[cache.rows[pos]])))


def test_batches_shuffle_per_epoch_deterministically_and_shard(tiny_synth, tokenizer):
    info = load_dataset(tiny_synth)
    cache = build_cache(info, pre_for(info, tokenizer), progress=False)
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
    assert len(orders[0]) == len(orders[1]) and not set(orders[0]) & set(orders[1])
    whole = BatchIterator(cache, idx, 4, shuffle=True, seed=1)._order()
    assert set(orders[0]) | set(orders[1]) == set(whole[: len(whole) - len(whole) % 2])
    batch = next(iter(a))
    assert batch["attention_mask"][:, -1].any() and batch["input_ids"].shape[1] <= 16


# ---------------------------------------------------------------- bad input stays out
def test_image_paths_outside_the_dataset_are_never_opened(tiny_synth, tmp_path):
    root = copy_of(tiny_synth, tmp_path)
    sibling = copy_of(tiny_synth, tmp_path, "sibling")
    secret = tmp_path / "outside.png"
    shutil.copy(next((root / "images").iterdir()), secret)
    (root / "images" / "link.png").symlink_to(secret)
    edit_rows(root, image={0: "../../outside.png", 1: str(secret), 2: "../../sibling/images/"
                           + pd.read_csv(sibling / "metadata.csv").at[2, "image"],
                           3: "link.png", 4: "../../../../../../etc/passwd"})
    opened = []
    forbidden = (str(secret), str(sibling), "/etc/passwd")

    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(forbidden):
            opened.append(args[0])

    sys.addaudithook(hook)
    info = load_dataset(root)
    tok = load_tokenizer(get_profile("smoke").model)
    cache = build_cache(info, pre_for(info, tok), progress=False)
    assert info.skipped == {"outside-dataset": 5}
    assert len(cache) == len(info.frame) == 155
    assert opened == []


def test_empty_text_and_label_emoji_are_handled(tiny_synth, tmp_path):
    root = copy_of(tiny_synth, tmp_path)
    meta = edit_rows(root, text={0: "", 1: "   ", 3: "so funny 😂"})
    label = meta.at[2, "label"]
    edit_rows(root, text={2: f" {label}{label} "})
    info = load_dataset(root)
    assert info.skipped == {"empty-text": 2, "empty-after-label-emoji": 1}
    assert info.label_emoji_rows == 1  # row 3: kept, its 😂 removed before the model sees it
    tok = load_tokenizer(get_profile("smoke").model)
    pre = pre_for(info, tok)
    assert pre.text("so funny 😂") == "so funny"
    assert pre.text("so funny 🦄") == "so funny unicorn"  # not a label: read as words


def run_cli(*args):
    return main(["train", "--profile", "smoke", *map(str, args), "--epochs", "1"])


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"id,text,image,label,split\n", "header but no rows"),
    ("id,text,image,label,split\na,hi,a.png,😂,train,extra\n".encode(), "more fields"),
    ("id,text,image,label,split\nb,ho,b.png,😂,train\na,hi,a.png,😂,train,x\n".encode(),
     "has 6 fields"),
    (b"id,text,image,label,split\nb,ho,b.png\n", "fewer fields"),
    (b"id,text,image,label,split\na,h\xffi,a.png,x,train\n", "is not UTF-8"),
    ("id,text,image,label,split\n,hi,a.png,😂,train\n".encode(), "empty id"),
    ("id,words,image,label,split\na,hi,a.png,😂,train\n".encode(), "missing column"),
])
def test_malformed_tables_give_one_line_and_exit_2(tiny_synth, tmp_path, capsys, content,
                                                   message):
    root = copy_of(tiny_synth, tmp_path)
    (root / "metadata.csv").write_bytes(content)
    assert run_cli("--data", root, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "metadata.csv" in err


def test_one_class_and_empty_splits_are_refused_by_name(tiny_synth, tmp_path, capsys):
    root = copy_of(tiny_synth, tmp_path)
    labels = json.loads((root / "labels.json").read_text())
    (root / "labels.json").write_text(json.dumps(labels[:1]))
    assert run_cli("--data", root, "--out", tmp_path / "r") == 2
    assert "at least 2" in capsys.readouterr().err
    root = copy_of(tiny_synth, tmp_path, "noval")
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    meta.loc[meta["split"] == "val", "split"] = "train"
    meta.to_csv(root / "metadata.csv", index=False)
    assert run_cli("--data", root, "--out", tmp_path / "r2") == 2
    assert "the 'val' split has no usable posts" in capsys.readouterr().err


@pytest.mark.parametrize("classes", [2, 3])
def test_two_and_three_class_datasets_train_end_to_end(tiny_synth, tmp_path, classes):
    from emolib.run import train

    root = copy_of(tiny_synth, tmp_path)
    labels = json.loads((root / "labels.json").read_text())[:classes]
    (root / "labels.json").write_text(json.dumps(labels, ensure_ascii=False))
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    meta["label"] = [labels[i % classes]["emoji"] for i in range(len(meta))]
    meta.to_csv(root / "metadata.csv", index=False)
    res = train("smoke", root, tmp_path / "r", progress=False, epochs=1, batch_size=16)
    assert res.model.cfg.num_classes == classes
    assert 0.0 <= res.test_metrics["accuracy"] <= 1.0
    assert ("top3_accuracy" in res.test_metrics) == (classes > 3)


# ---------------------------------------------------------------- BatchIterator, by hand
def hand_cache(n=13, length=6, features=False, seed=0):
    """A TensorCache built by hand: image row r is filled with r, text i has i % 5 + 1
    tokens, and the images are stored in reverse order (rows != positions)."""
    from emolib.data import TensorCache

    rows = np.arange(n)[::-1].copy()
    images = np.zeros((n + 2, 3, 2, 2), np.uint8)
    for r in range(n + 2):
        images[r] = r
    lengths = np.arange(n) % 5 + 1
    mask = torch.tensor((np.arange(length)[None] < lengths[:, None]).astype(np.int8))
    ids = (torch.arange(n * length, dtype=torch.int32).view(n, length) + 1) * mask
    return TensorCache(ids=np.array([f"p{i}" for i in range(n)]), images=images, rows=rows,
                       input_ids=ids, attention_mask=mask, labels=torch.arange(n) % 3,
                       splits=np.array(["train", "val", "test"] * n)[:n],
                       text_features=torch.randn(n, 4) if features else None)


def test_indices_and_length_of_the_cache():
    cache = hand_cache()
    assert len(cache) == 13
    assert cache.indices("val").tolist() == [1, 4, 7, 10]
    assert cache.indices("nope").tolist() == []


def test_a_batch_holds_exactly_its_posts():
    cache = hand_cache(features=True)
    idx = np.array([7, 2, 11])
    b = BatchIterator(cache, idx, 3).batch(idx)
    assert set(b) == {"pixel_values", "input_ids", "attention_mask", "labels", "text_features"}
    width = int(cache.attention_mask[idx].sum(1).max())  # 3 tokens: texts 7, 2 and 11
    assert width == 3 and b["input_ids"].shape == (3, width)
    assert torch.equal(b["input_ids"], cache.input_ids[idx, :width].long())
    assert torch.equal(b["attention_mask"], cache.attention_mask[idx, :width].long())
    assert b["input_ids"].dtype == b["attention_mask"].dtype == torch.long
    assert torch.equal(b["labels"], cache.labels[idx])
    assert torch.equal(b["text_features"], cache.text_features[idx])
    # each post gets its own image (row = n - 1 - position here), whatever the row order
    assert [int(b["pixel_values"][k, 0, 0, 0]) for k in range(3)] == [13 - 1 - i for i in idx]
    assert b["pixel_values"].dtype == torch.uint8
    full = BatchIterator(cache, idx, 3, trim=False).batch(idx)
    assert full["input_ids"].shape == (3, 6)
    assert "text_features" not in BatchIterator(hand_cache(), idx, 3).batch(idx)


def test_an_empty_text_batch_keeps_one_column():
    cache = hand_cache()
    cache.attention_mask[:] = 0
    idx = np.array([0, 1])
    assert BatchIterator(cache, idx, 2).batch(idx)["input_ids"].shape == (2, 1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 13), batch=st.integers(1, 6), world=st.integers(1, 3),
       drop_last=st.booleans(), shuffle=st.booleans(), seed=st.integers(0, 3),
       epoch=st.integers(0, 2))
def test_batches_partition_the_epoch_across_ranks(n, batch, world, drop_last, shuffle, seed,
                                                  epoch):
    cache = hand_cache()
    idx = np.arange(13)[:n]
    ranks = []
    for rank in range(world):
        it = BatchIterator(cache, idx, batch, shuffle=shuffle, drop_last=drop_last,
                           seed=seed, rank=rank, world_size=world)
        it.set_epoch(epoch)
        got = [b["labels"] for b in it]
        share = n // world
        assert len(it) == len(got) == (share // batch if drop_last else -(-share // batch))
        sizes = [len(g) for g in got]
        assert all(s == batch for s in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= batch)
        if drop_last:
            assert all(s == batch for s in sizes)
        order = it._order()
        assert len(order) == share
        assert torch.equal(torch.cat(got) if got else torch.tensor([], dtype=torch.long),
                           cache.labels[order[:sum(sizes)]])
        ranks.append(order)
    seen = np.concatenate(ranks)
    assert len(set(seen)) == len(seen) == world * (n // world)  # disjoint, equal shares
    assert set(seen) <= set(idx)
    if not shuffle:
        assert sorted(seen) == list(idx[:world * (n // world)])


def test_shuffle_is_a_permutation_seeded_by_seed_and_epoch():
    cache = hand_cache()
    idx = np.arange(13)

    def order(seed, epoch, shuffle=True):
        it = BatchIterator(cache, idx, 4, shuffle=shuffle, seed=seed)
        it.set_epoch(epoch)
        return it._order().tolist()

    assert sorted(order(0, 0)) == list(range(13))
    assert order(0, 0) == order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert order(0, 0, shuffle=False) == list(range(13))
    assert order(5, 2) == idx[np.random.default_rng([5, 2]).permutation(13)].tolist()


def test_ranks_take_every_world_size_th_sample_of_the_same_permutation():
    cache = hand_cache()
    whole = BatchIterator(cache, np.arange(13), 4, shuffle=True, seed=1)._order()
    for rank in range(3):
        it = BatchIterator(cache, np.arange(13), 4, shuffle=True, seed=1, rank=rank,
                           world_size=3)
        assert it._order().tolist() == whole[:12][rank::3].tolist()


def test_no_samples_is_an_error():
    with pytest.raises(DataError, match="no usable samples"):
        BatchIterator(hand_cache(), np.array([], dtype=int), 4)


# ---------------------------------------------------------------- load_dataset, build_cache
def test_a_row_with_several_faults_is_counted_once_under_the_strongest_reason(tiny_synth,
                                                                               tmp_path,
                                                                               caplog):
    root = copy_of(tiny_synth, tmp_path)
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    label = meta.at[2, "label"]
    edit_rows(root, text={0: "", 1: f"{label}", 2: "fine text", 3: f"ok {label}",
                          4: f"{label} yes"},
              image={0: "../x.png", 1: "../y.png", 5: "../5.png", 6: "/abs.png"})
    with caplog.at_level("WARNING", logger="emolib.data"):
        info = load_dataset(root)
    assert info.skipped == {"outside-dataset": 4}  # outside wins over empty text
    assert info.label_emoji_rows == 2  # rows 3 and 4: kept, their label emoji removed
    assert list(info.frame.columns) == ["id", "text", "image", "label", "split", "y"]
    assert len(info.frame) == len(meta) - 4 and info.frame.index.tolist() == \
        list(range(len(meta) - 4))
    assert info.frame.at[0, "id"] == meta.at[2, "id"]
    assert info.num_classes == len(info.labels) == 8
    assert len(info.split("val")) == int((info.frame["split"] == "val").sum()) > 0
    examples = [meta.at[i, "id"] for i in (0, 1, 5)]  # the first three
    assert [r.getMessage() for r in caplog.records] == \
        [f"{root}: left out 4 row(s) (outside-dataset), e.g. {examples}"]


def test_two_classes_are_enough_and_one_is_refused_by_name(tiny_synth, tmp_path):
    root = copy_of(tiny_synth, tmp_path)
    labels = json.loads((root / "labels.json").read_text())
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    meta["label"] = [labels[i % 2]["emoji"] for i in range(len(meta))]
    meta.to_csv(root / "metadata.csv", index=False)
    (root / "labels.json").write_text(json.dumps(labels[:2], ensure_ascii=False))
    assert load_dataset(root).num_classes == 2
    (root / "labels.json").write_text(json.dumps(labels[:1], ensure_ascii=False))
    with pytest.raises(DataError) as err:
        load_dataset(root)
    assert str(err.value) == f"{root / 'labels.json'} lists 1 class; a classifier needs at " \
        "least 2"
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "nope")
    assert str(err.value) == (f"dataset folder {tmp_path / 'nope'} does not exist; create one "
                              "with `./data_download.sh synthetic` or `python -m emolib data "
                              "synth`")


def test_the_image_cache_is_decoded_once_and_keyed_by_size_and_rows(tiny_synth, tmp_path,
                                                                    tokenizer, monkeypatch,
                                                                    caplog):
    import emolib.data as D

    root = copy_of(tiny_synth, tmp_path)
    info = load_dataset(root)
    pre = pre_for(info, tokenizer, 24)
    (root / "images" / info.frame.at[5, "image"]).write_bytes(b"junk")
    with caplog.at_level("WARNING", logger="emolib.data"):
        first = build_cache(info, pre, progress=False, workers=2)
    assert "skipped 1 image(s): corrupt" in caplog.text
    names = sorted(p.name for p in (root / "cache").iterdir())
    key = names[0].removeprefix("images_24_").removesuffix(".npy")
    assert names == [f"images_24_{key}.npy", f"skipped_24_{key}.csv"]  # no temporary left
    monkeypatch.setattr(D, "_decode", lambda *a: pytest.fail("decoded again"))
    again = build_cache(info, pre, progress=False)
    assert again.skipped == first.skipped == {"corrupt": 1}
    assert np.array_equal(np.asarray(again.images), np.asarray(first.images))
    assert again.ids.tolist() == first.ids.tolist() and 5 not in again.rows
    assert np.array_equal(again.rows, np.delete(np.arange(len(info.frame)), 5))
    assert torch.equal(again.labels, torch.as_tensor(info.frame["y"].to_numpy()[again.rows]))
    assert again.splits.tolist() == info.frame["split"].to_numpy()[again.rows].tolist()
    monkeypatch.undo()
    fewer = D.DatasetInfo(info.root, info.labels, info.frame.iloc[:40].reset_index(drop=True))
    build_cache(fewer, pre, progress=False)  # other rows: another cache, not a stale one
    assert len(list((root / "cache").glob("images_24_*.npy"))) == 2


def test_skips_read_back_from_disk_keep_ids_that_look_missing(tiny_synth, tmp_path, tokenizer,
                                                              capsys):
    """An id such as "NA" names its skipped image on the second load too."""
    root = copy_of(tiny_synth, tmp_path)
    meta = edit_rows(root, id={0: "NA", 1: "null"})
    for i in (0, 1):
        (root / "images" / meta.at[i, "image"]).write_bytes(b"junk")
    info = load_dataset(root)
    pre = pre_for(info, tokenizer, 24)
    first = build_cache(info, pre, progress=True)
    assert "decode images @24px" in capsys.readouterr().err
    again = build_cache(info, pre, progress=False)
    assert "NA" not in again.ids.tolist() and "null" not in again.ids.tolist()
    assert len(again) == len(first) == len(info.frame) - 2


def test_a_dataset_without_a_usable_image_is_refused(tiny_synth, tmp_path, tokenizer):
    root = copy_of(tiny_synth, tmp_path)
    info = load_dataset(root)
    for path in (root / "images").iterdir():
        path.write_bytes(b"")
    with pytest.raises(DataError, match=r"no usable image in .*images \(160 rows; skipped: "
                                        r"\{'empty-file': 160\}\)"):
        build_cache(info, pre_for(info, tokenizer), progress=False)


def test_the_collator_counts_what_it_drops_and_pads_like_the_cache(tokenizer):
    pre = Preprocessor.for_labels(tokenizer, 4, 10, ["😂"])
    collate = Collator(pre)
    assert collate([None, None]) == {} and collate.skipped == 2
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    items = [{"text": "hi 😂", "image": image, "label": 1}, None,
             {"text": "hello there friend", "image": image + 1, "label": 0}]
    out = collate(items)
    assert collate.skipped == 3
    ids, mask = pre.tokenize(["hi 😂", "hello there friend"])
    width = int(mask.sum(1).max())
    assert torch.equal(out["input_ids"], ids[:, :width].long())
    assert torch.equal(out["attention_mask"], mask[:, :width].long())
    assert torch.equal(out["pixel_values"], torch.stack([image, image + 1]))
    assert out["labels"].tolist() == [1, 0]


def test_batch_iterator_defaults_serve_every_post_in_order_on_the_cpu():
    cache = hand_cache()
    idx = np.array([3, 1, 4, 0, 5, 9, 2])
    it = BatchIterator(cache, idx, 3)
    assert [b["labels"].tolist() for b in it] == [cache.labels[idx[i:i + 3]].tolist()
                                                  for i in (0, 3, 6)]  # no shuffle, no drop
    assert len(it) == 3 and it.device == torch.device("cpu")
    assert all(v.device.type == "cpu" for v in next(iter(it)).values())
    shuffled = BatchIterator(cache, idx, 3, shuffle=True)  # seed 0, epoch 0
    assert shuffled._order().tolist() == idx[np.random.default_rng([0, 0]).permutation(7)
                                              ].tolist()
    first = BatchIterator(cache, idx, 3, world_size=2)  # rank 0 unless told
    assert first._order().tolist() == idx[:6][0::2].tolist()


def test_the_per_item_dataset_counts_each_skip(tiny_synth, tmp_path, tokenizer):
    root = copy_of(tiny_synth, tmp_path)
    info = load_dataset(root)
    train = info.split("train")
    for name in train["image"].iloc[:3]:
        (root / "images" / name).unlink()
    ds = EmoticonDataset(info, "train", pre_for(info, tokenizer))
    assert [ds[i] for i in range(3)] == [None, None, None]
    assert ds.skipped == {"missing": 3}
    item = ds[3]
    assert item["label"] == int(train["y"].iloc[3]) and item["text"] == train["text"].iloc[3]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.uint8
