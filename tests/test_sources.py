"""Converters: instagram (local parquet) and twitter-emoticon (folders with every fault)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import fixtures_bad_data as fx
import pandas as pd
import pytest
from PIL import Image

import emolib.sources as sources
from emolib.download import DownloadError
from emolib.layout import DataError, read_labels, read_metadata
from emolib.sources import (
    MAX_TEXT,
    add_data_commands,
    caption_kinds,
    convert_instagram,
    convert_twitter_emoticon,
    detect_instagram_columns,
    is_complete,
    stratified_split,
)
from emolib.text import find_emoji

ROOT = Path(__file__).resolve().parents[1]


def jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (16, 16), bytes([seed * 7 % 256]) * 768).save(buf, format="JPEG")
    return buf.getvalue()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="emolib data")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------ emoji and splits


def test_one_kind_of_emoji_ignores_skin_tones_and_variation_selectors():
    assert caption_kinds("nice 👍🏽 👍 👍🏻") == {"👍"}
    assert caption_kinds("love ❤ and ❤️") == {"❤️"}
    assert caption_kinds("😂 ❤️") == {"😂", "❤️"}
    assert caption_kinds("no emoji here") == set()


def test_labels_spelled_as_emoji_names():
    assert sources.resolve_label(":fire:") == "🔥"
    assert sources.resolve_label("face_with_tears_of_joy") == "😂"
    assert sources.resolve_label("❤") == "❤️"
    assert sources.resolve_label("joy") == "joy"  # a bare word stays a class name


def test_stratified_split_is_80_10_10_per_class_and_seeded():
    labels = ["a"] * 60 + ["b"] * 40
    split = stratified_split(labels, seed=3)
    counts = Counter(zip(split, labels, strict=True))
    assert Counter(split) == {"train": 80, "val": 10, "test": 10}
    assert (counts["train", "a"], counts["train", "b"]) == (48, 32)
    assert (counts["val", "a"], counts["test", "a"]) == (6, 6)
    assert split == stratified_split(labels, seed=3)
    assert split != stratified_split(labels, seed=4)


def test_split_of_tiny_classes_falls_back_and_says_so():
    report = sources.Report()
    split = stratified_split(["a", "a", "a", "b", "c"], seed=0, report=report)
    assert len(split) == 5 and "train" in split
    assert any("split at random" in note for note in report.notes)
    with pytest.raises(DataError, match="too few"):
        stratified_split(["a", "b"])


# ------------------------------------------------------------------ instagram


def instagram_posts() -> list[dict]:
    """Captions planted for --top-k 2: 😂 (7 single-kind posts), ❤️ (5), 👍 (3)."""
    good = jpeg_bytes

    def post(caption, image=b"ok"):
        return {"caption": caption, "image": good() if image == b"ok" else image}

    return [
        post("😂😂 so funny"), post("lol 😂"), post("friday 😂 night"), post("me 😂"),
        post("😂 again"),
        post("😂😂😂"),  # emoji only: empty-text
        post("broken photo 😂", image=b"\xff\xd8 not a jpeg"),  # corrupt
        post("love ❤ and ❤️"), post("❤️ home"), post("sunday ❤️"), post("❤ family"),
        post("no picture ❤️", image=None),  # missing
        post("nice 👍🏽"), post("ok 👍"), post("great 👍🏻👍"),  # rare-emoji (3rd class)
        post("both 😂 ❤️"),  # mixed-emoji
        post("plain caption"),  # no-emoji
        post(None),  # no-caption
    ]


INSTAGRAM_SKIPS = {"rare-emoji": 3, "mixed-emoji": 1, "no-emoji": 1, "no-caption": 1,
                   "empty-text": 1, "corrupt": 1, "missing": 1}


def write_instagram_parquet(folder: Path, posts: list[dict], struct_images: bool = True,
                            caption_col: str = "text", image_col: str = "image") -> Path:
    """Parquet shaped like the hub's: an Image struct {bytes, path} and a caption string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    if struct_images:
        image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        images = [None if p["image"] is None else {"bytes": p["image"], "path": f"{i}.jpg"}
                  for i, p in enumerate(posts)]
    else:
        image_type, images = pa.binary(), [p["image"] for p in posts]
    half = len(posts) // 2
    for part, (lo, hi) in enumerate([(0, half), (half, len(posts))]):
        table = pa.table({
            image_col: pa.array(images[lo:hi], type=image_type),
            caption_col: pa.array([p["caption"] for p in posts[lo:hi]], type=pa.string()),
            "likes": pa.array(range(lo, hi), type=pa.int64()),
        })
        pq.write_table(table, folder / f"train-0000{part}-of-00002.parquet")
    return folder


def test_instagram_conversion(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts())
    result = convert_instagram(raw, tmp_path / "ig", top_k=2, progress=False)
    assert dict(result.report.skips) == INSTAGRAM_SKIPS
    assert result.rows == 9
    labels = read_labels(tmp_path / "ig" / "labels.json")
    assert [(lab.emoji, lab.name) for lab in labels] == [("😂", "face with tears of joy"),
                                                          ("❤️", "red heart")]
    meta = read_metadata(tmp_path / "ig" / "metadata.csv", labels)
    assert Counter(meta["label"]) == {"😂": 5, "❤️": 4}
    assert "lol" in set(meta["text"]) and "love and" in set(meta["text"])
    assert not any(find_emoji(t) for t in meta["text"])
    assert set(meta["split"]) <= {"train", "val", "test"} and (meta["split"] == "train").sum() >= 7
    for name in meta["image"]:
        assert Image.open(tmp_path / "ig" / "images" / name).mode == "RGB"
    assert is_complete(tmp_path / "ig")
    marker = json.loads((tmp_path / "ig" / ".complete").read_text(encoding="utf-8"))
    assert marker["source"] == "instagram" and marker["skipped"] == INSTAGRAM_SKIPS


def test_instagram_raw_bytes_column_and_max_posts(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts(), struct_images=False,
                                  caption_col="caption", image_col="img")
    result = convert_instagram(raw, tmp_path / "ig", top_k=2, max_posts=4, progress=False)
    assert result.rows == 4 and set(result.splits) <= {"train", "val", "test"}


def test_instagram_columns_not_found_lists_what_exists(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("user", pa.string()), ("likes", pa.int64())])
    with pytest.raises(DataError, match=r"no image column .* the columns are: user \(string\), "
                                        r"likes \(int64\)"):
        detect_instagram_columns(schema)
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"img": pa.array([b"x"]), "a": pa.array(["x"]), "b": pa.array(["y"])}),
                   tmp_path / "raw" / "x.parquet")
    with pytest.raises(DataError, match="no caption column"):
        convert_instagram(tmp_path / "raw", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="no .parquet files"):
        convert_instagram(tmp_path / "nothing", tmp_path / "out", progress=False)


def test_instagram_cli_with_local_parquet(tmp_path, capsys):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts())
    out = tmp_path / "ig"
    assert run_cli("instagram", "--parquet-dir", str(raw), "--top-k", "2", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "rare-emoji" in printed and f"wrote {out}: 9 rows" in printed
    assert run_cli("instagram", "--top-k", "2", "--out", str(out)) == 0  # no download needed
    assert "already holds a complete dataset" in capsys.readouterr().out


def test_fetch_instagram_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DataError, match=r"needs huggingface_hub .*pip install 'emolib\[data\]'"):
        sources.fetch_instagram()


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub with no network: nothing cached, dataset_info answers ``size``."""
    import huggingface_hub

    state = {"calls": [], "size": 1000, "online": True}

    def snapshot_download(**kwargs):
        state["calls"].append(kwargs)
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not in the cache")
        return str(tmp_path / "snapshot")

    def dataset_info(self, repo_id, **kwargs):
        if not state["online"]:
            raise ConnectionError("Name or service not known")
        file = SimpleNamespace(rfilename="data/train-00000.parquet", size=state["size"])
        return SimpleNamespace(siblings=[file, SimpleNamespace(rfilename="README.md", size=9)])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    return state


def test_fetch_instagram_downloads_only_parquet(fake_hub, tmp_path):
    assert sources.fetch_instagram(cache_dir=tmp_path) == tmp_path / "snapshot"
    first, second = fake_hub["calls"]
    assert first["local_files_only"] and "local_files_only" not in second
    assert (second["repo_id"], second["repo_type"], second["allow_patterns"]) == (
        "kkcosmos/instagram-images-with-captions", "dataset", ["*.parquet"])


def test_fetch_instagram_offline_and_disk_full(fake_hub, tmp_path):
    fake_hub["online"] = False
    with pytest.raises(DownloadError, match="cannot reach the Hugging Face hub .*offline.*"
                                            "--parquet-dir"):
        sources.fetch_instagram(cache_dir=tmp_path)
    fake_hub["online"], fake_hub["size"] = True, 10**16
    with pytest.raises(DownloadError, match="not enough disk space"):
        sources.fetch_instagram(cache_dir=tmp_path)
    assert len(fake_hub["calls"]) == 2  # only the cache lookups: no download was started


# ------------------------------------------------------------------ twitter-emoticon


@pytest.fixture
def bad(tmp_path):
    return tmp_path / "bad", fx.make_bad_dataset(tmp_path / "bad")


def test_bad_data_conversion_counts_every_planted_fault(bad, tmp_path):
    src, expected = bad
    out = tmp_path / "out"
    result = convert_twitter_emoticon(src, out, progress=False)
    assert dict(result.report.skips) == expected["skips"]
    assert dict(result.report.changes) == expected["changes"]
    assert result.rows == expected["rows"]
    labels = read_labels(out / "labels.json")
    assert [lab.emoji for lab in labels] == fx.CLASSES  # the order of the given labels.json
    meta = read_metadata(out / "metadata.csv", labels)
    assert len(meta) == expected["rows"] and meta["id"].is_unique
    assert Counter(meta["label"]) == {c: fx.GOOD_PER_CLASS for c in fx.CLASSES}
    assert Counter(meta["split"]) == {"train": 28, "val": 4, "test": 4}
    by_id = meta.set_index("id")
    assert MAX_TEXT - 5 <= len(by_id.at["t005", "text"]) <= MAX_TEXT
    assert by_id.at["t006", "text"] == "best pizza ever honestly"  # emoji removed
    assert by_id.at["t002", "text"] == "今日は本当に楽しかった"
    assert by_id.at["t011", "text"] == "shared with a right-to-left mark"  # no control chars
    images = {name: Image.open(out / "images" / name) for name in meta["image"]}
    assert {(im.format, im.mode) for im in images.values()} == {("JPEG", "RGB")}
    assert max(max(im.size) for im in images.values()) == 512  # big_jpeg, downscaled
    exif_row = fx.GOOD_MAKERS.index(fx.exif_rotated_jpeg)
    assert images[by_id.at[f"t{exif_row:03d}", "image"]].size == (20, 60)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(meta["image"])
    assert not (tmp_path / ".out.partial").exists()
    table = result.summary()
    for reason, count in expected["skips"].items():
        assert any(line.split()[:2] == [reason, str(count)] for line in table.splitlines())
    assert "skipped: 15 rows" in table and "text-truncated" in table


def test_rerun_does_nothing_and_force_rebuilds(bad, tmp_path):
    src, _ = bad
    out = tmp_path / "out"
    convert_twitter_emoticon(src, out, progress=False)
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    again = convert_twitter_emoticon(src, out, progress=False)
    assert again.already and "nothing to do" in again.summary()
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp
    rebuilt = convert_twitter_emoticon(src, out, force=True, progress=False)
    assert not rebuilt.already and rebuilt.rows == fx.EXPECTED_ROWS and is_complete(out)


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(bad, tmp_path):
    src, _ = bad
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="no finished dataset .* pass --force"):
        convert_twitter_emoticon(src, out, progress=False)
    assert (out / "thesis.tex").read_text() == "precious"


def test_interrupted_conversion_leaves_nothing_that_looks_finished(bad, tmp_path, monkeypatch):
    src, _ = bad
    calls = []
    real = sources.load_rgb

    def flaky(path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(sources, "load_rgb", flaky)
    with pytest.raises(KeyboardInterrupt):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / ".out.partial").exists()


def write_images(folder: Path, names: list[str]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fx.rgb_jpeg(folder / "images" / name, seed=i)


def test_latin1_file_with_class_names(tmp_path):
    src = tmp_path / "src"
    write_images(src, [f"{i}.jpg" for i in range(6)])
    lines = ["text,image,label"] + [f"caf\xe9 cr\xe8me {i},{i}.jpg,{'happy' if i % 2 else 'sad'}"
                                    for i in range(6)]
    (src / "data.csv").write_bytes("\n".join(lines).encode("latin-1"))
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert any("not UTF-8" in note and "Latin-1" in note for note in result.report.notes)
    meta = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert meta["text"].str.startswith("café crème").all()
    assert [lab.emoji for lab in read_labels(tmp_path / "out" / "labels.json")] == ["happy",
                                                                                    "sad"]


def test_utf16_tsv_with_split_names(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    text = "tweet\timg\temoticon\tset\nhello\ta.jpg\t😂\ttraining\nbye\tb.jpg\t🔥\tvalidation\n" \
           "hm\tc.jpg\t😂\tTest\n"
    (src / "tweets.tsv").write_bytes(text.encode("utf-16"))
    convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    meta = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert list(meta["split"]) == ["train", "val", "test"]
    assert list(meta["id"]) == ["tweets-2", "tweets-3", "tweets-4"]  # made from line numbers


def test_jsonl_with_a_bad_line(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    rows = [{"id": i, "content": f"post {i}", "file": f"{n}.jpg", "class": "😂"}
            for i, n in enumerate("abcd")]
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:2]) + "\n{oops\n" + \
        "\n".join(json.dumps(r) for r in rows[2:]) + "\n"
    (src / "posts.jsonl").write_text(body, encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert dict(result.report.skips) == {"bad-row": 1}
    assert result.report.examples["bad-row"] == ["posts.jsonl line 3: not valid JSON"]
    assert result.rows == 4


def test_unknown_split_is_refused_naming_the_row_and_the_fix(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg"])
    (src / "d.csv").write_text("id,text,image,label,split\nx1,hi,a.jpg,😂,train\n"
                               "x2,yo,b.jpg,😂,holdout\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv line 3 \(id 'x2'\): unknown split 'holdout'; "
                                        r"use train, val or test .*delete the split column"):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_columns_explain_what_is_expected(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "d.csv").write_text("tweet,foo\nhello,bar\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    message = str(info.value)
    assert "d.csv: no image / label column. Found columns: tweet, foo." in message
    assert "image: one of image, image_path, img" in message
    assert "label: one of label, emoji, emoticon, class" in message
    assert "Rename the header line" in message


def test_train_val_test_files_give_the_split(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    for split, image in (("train", "a"), ("valid", "b"), ("test", "c")):
        (src / f"{split}.csv").write_text(f"text,image,label\n{split} row,{image}.jpg,🔥\n",
                                          encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.splits == {"train": 1, "val": 1, "test": 1}


def test_several_tables_need_a_choice(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    body = "text,image,label\none,a.jpg,😂\ntwo,b.jpg,😂\nthree,c.jpg,😂\n"
    (src / "mine.csv").write_text(body, encoding="utf-8")
    (src / "other.csv").write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=r"several tables \(mine.csv, other.csv\); pass --table"):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    result = convert_twitter_emoticon(src, tmp_path / "out", table=src / "mine.csv",
                                      progress=False)
    assert result.rows == 3


def test_labels_file_and_images_outside_the_folder(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    fx.rgb_jpeg(tmp_path / "outside.jpg")
    (src / "keep.txt").write_text("😂\n🔥\n", encoding="utf-8")
    (src / "d.csv").write_text("text,image,label\none,a.jpg,😂\ntwo,b.jpg,🔥\nthree,c.jpg,😂\n"
                               "four,d.jpg,🤖\nfive,../outside.jpg,😂\n", encoding="utf-8")
    result = convert_twitter_emoticon(src / "d.csv", tmp_path / "out", allow_outside=False,
                                      labels_file=src / "keep.txt", progress=False)
    assert dict(result.report.skips) == {"unknown-label": 1, "image-outside-folder": 1}
    assert [lab.emoji for lab in result.labels] == ["😂", "🔥"]


def test_twitter_cli_errors_are_one_line(tmp_path, capsys):
    assert run_cli("twitter-emoticon", "--from", str(tmp_path / "none"),
                   "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "does not exist" in err


def test_twitter_cli_converts(bad, tmp_path, capsys):
    src, expected = bad
    assert run_cli("twitter-emoticon", "--from", str(src), "--out", str(tmp_path / "o"),
                   "--seed", "1", "--max-side", "32") == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'o'}: {expected['rows']} rows" in out
    sizes = [Image.open(p).size for p in (tmp_path / "o" / "images").iterdir()]
    assert max(max(s) for s in sizes) == 32


# ------------------------------------------------------------------ training smoke test

CLI_READY = (importlib.util.find_spec("emolib.cli") is not None
             and importlib.util.find_spec("emolib.__main__") is not None)


@pytest.mark.xfail(not CLI_READY, strict=True,
                   reason="NOT YET RUNNABLE: `python -m emolib train` (emolib/cli.py and "
                          "emolib/__main__.py, the lead's) does not exist yet; this test runs "
                          "for real as soon as it does")
def test_one_epoch_smoke_training_on_converted_bad_data(bad, tmp_path):
    src, expected = bad
    data = tmp_path / "data"
    convert_twitter_emoticon(src, data, progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep), "EMOLIB_PROFILE": "smoke"}
    proc = subprocess.run(
        [sys.executable, "-m", "emolib", "train", "--profile", "smoke", "--data", str(data),
         "--out", str(tmp_path / "run"), "--epochs", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any((tmp_path / "run").iterdir())


# ------------------------------------------------------------------ docs stay in sync


def test_book_page_documents_every_reason_and_column_name():
    page = (ROOT / "book" / "own_data.md").read_text(encoding="utf-8")
    for reason in [*sources.SKIP_REASONS, *sources.CHANGE_REASONS]:
        assert f"`{reason}`" in page, reason
    for names in sources.ALIASES.values():
        for name in names:
            assert f"`{name}`" in page, name
