"""Converters (emolib.prepare): instagram from local parquet, twitter-emoticon from folders
with every planted fault; malformed tables through the CLI; files outside never opened.
"""

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import fixtures_bad_data as fx
import pytest
from PIL import Image

from emolib.cli import main
from emolib.layout import DataError, is_complete, read_labels, read_metadata
from emolib.prepare import rows, tables, twitter
from emolib.prepare.instagram import caption_kinds, convert_instagram, detect_columns
from emolib.prepare.rows import MAX_TEXT, Report, resolve_label, stratified_split
from emolib.prepare.twitter import convert_twitter_emoticon

ROOT = Path(__file__).resolve().parents[1]

#: The files each test wants to see opened are appended here while it watches (an audit
#: hook cannot be removed, so one is installed for the session and switched by this list).
WATCHING: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and WATCHING and isinstance(args[0], (str, bytes, os.PathLike)):
        WATCHING[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (16, 16), bytes([seed * 7 % 256]) * 768).save(buf, format="JPEG")
    return buf.getvalue()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ emoji, labels, splits


def test_one_kind_of_emoji_ignores_skin_tones_and_variation_selectors():
    assert caption_kinds("nice 👍🏽 👍 👍🏻") == {"👍"}
    assert caption_kinds("love ❤ and ❤️") == {"❤️"}
    assert caption_kinds("😂 ❤️") == {"😂", "❤️"}
    assert caption_kinds("no emoji here") == set()


def test_labels_spelled_as_emoji_names():
    assert resolve_label(":fire:") == "🔥"
    assert resolve_label("face_with_tears_of_joy") == "😂"
    assert resolve_label("❤") == "❤️"
    assert resolve_label("joy") == "joy"  # a bare alias stays a class name
    assert resolve_label(":joy:") == "😂"
    assert resolve_label("  ") == ""


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
    report = Report(Path("x"))
    split = stratified_split(["a", "a", "a", "b", "c"], seed=0, report=report)
    assert len(split) == 5 and "train" in split
    assert any("split at random" in note for note in report.notes)
    with pytest.raises(DataError, match="too few"):
        stratified_split(["a", "b"])


# ------------------------------------------------------------------ instagram


def instagram_posts() -> list[dict]:
    """Captions planted for --top-k 2: 😂 (7 single-kind posts), ❤️ (5), 👍 (3)."""
    def post(caption, image=b"ok"):
        return {"caption": caption, "image": jpeg_bytes() if image == b"ok" else image}

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
#: id -> (text, label) of every post the converter must keep (ids count posts from 1)
INSTAGRAM_ROWS = {
    "ig000001": ("so funny", "😂"), "ig000002": ("lol", "😂"),
    "ig000003": ("friday night", "😂"), "ig000004": ("me", "😂"), "ig000005": ("again", "😂"),
    "ig000008": ("love and", "❤️"), "ig000009": ("home", "❤️"), "ig000010": ("sunday", "❤️"),
    "ig000011": ("family", "❤️"),
}


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
            "likes": pa.array(range(lo, hi), type=pa.int64()),
            caption_col: pa.array([p["caption"] for p in posts[lo:hi]], type=pa.string()),
            image_col: pa.array(images[lo:hi], type=image_type),
        })
        pq.write_table(table, folder / f"train-0000{part}-of-00002.parquet")
    return folder


def test_instagram_conversion_row_by_row(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts())
    result = convert_instagram(raw, tmp_path / "ig", top_k=2, progress=False)
    assert dict(result.skips) == INSTAGRAM_SKIPS
    labels = read_labels(tmp_path / "ig" / "labels.json")
    assert [(lab.emoji, lab.name) for lab in labels] == [("😂", "face with tears of joy"),
                                                          ("❤️", "red heart")]
    meta = read_metadata(tmp_path / "ig" / "metadata.csv", labels)
    assert {r.id: (r.text, r.label) for r in meta.itertuples()} == INSTAGRAM_ROWS
    assert list(meta["image"]) == [f"{i}.jpg" for i in meta["id"]]
    assert Counter(meta["split"]) == {"train": 7, "val": 1, "test": 1}
    for name in meta["image"]:
        assert Image.open(tmp_path / "ig" / "images" / name).mode == "RGB"
    marker = json.loads((tmp_path / "ig" / ".complete").read_text(encoding="utf-8"))
    assert marker["source"] == "instagram" and marker["skipped"] == INSTAGRAM_SKIPS
    assert marker["rows"] == 9 and marker["top_k"] == 2


def test_instagram_raw_bytes_column_and_max_posts(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts(), struct_images=False,
                                  caption_col="caption", image_col="img")
    result = convert_instagram(raw, tmp_path / "ig", top_k=2, max_posts=4, progress=False)
    assert list(result.frame["id"]) == ["ig000001", "ig000002", "ig000003", "ig000004"]


def test_instagram_columns_not_found_lists_what_exists(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("user", pa.string()), ("likes", pa.int64())])
    with pytest.raises(DataError, match=r"no image column .* the columns are: user \(string\), "
                                        r"likes \(int64\)"):
        detect_columns(schema)
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
    code, printed, _ = run_cli(capsys, "instagram", "--parquet-dir", str(raw), "--top-k", "2",
                               "--out", str(out))
    assert code == 0 and "rare-emoji" in printed and f"wrote {out}: 9 rows" in printed
    code, printed, _ = run_cli(capsys, "instagram", "--top-k", "2", "--out", str(out))
    assert code == 0 and "already holds a complete dataset" in printed  # no download


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub.snapshot_download, recorded; ``error`` makes it raise."""
    import huggingface_hub

    state = {"calls": [], "error": None}

    def snapshot_download(repo_id, **kwargs):
        state["calls"].append({"repo_id": repo_id, **kwargs})
        if state["error"]:
            raise state["error"]
        return str(write_instagram_parquet(tmp_path / "snapshot", instagram_posts()))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return state


def test_instagram_cli_downloads_only_parquet(fake_hub, tmp_path, capsys):
    code, printed, _ = run_cli(capsys, "instagram", "--top-k", "2", "--out",
                               str(tmp_path / "ig"), "--cache-dir", str(tmp_path / "hf"))
    assert code == 0 and "9 rows" in printed
    (call,) = fake_hub["calls"]
    assert call == {"repo_id": "kkcosmos/instagram-images-with-captions",
                    "repo_type": "dataset", "allow_patterns": ["*.parquet"],
                    "cache_dir": tmp_path / "hf"}


def test_instagram_offline_is_one_line(fake_hub, tmp_path, capsys):
    from huggingface_hub.errors import LocalEntryNotFoundError

    fake_hub["error"] = LocalEntryNotFoundError("cannot find the files in the local cache")
    code, _, err = run_cli(capsys, "instagram", "--out", str(tmp_path / "ig"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: cannot find the files") and not (tmp_path / "ig").exists()


def test_missing_extra_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    code, _, err = run_cli(capsys, "instagram", "--out", str(tmp_path / "ig"))
    assert code == 2 and err.count("\n") == 1 and "pip install 'emolib[data]'" in err


# ------------------------------------------------------------------ twitter-emoticon

#: The text each good row of the bad dataset must end up with (by n % 12; row 5 is long).
CLEAN_TEXTS = [t.replace(" 🍕", "").replace("\u200f", "") for t in fx.TEXTS]


@pytest.fixture
def bad(tmp_path):
    return tmp_path / "bad", fx.make_bad_dataset(tmp_path / "bad")


def test_bad_data_conversion_row_by_row(bad, tmp_path):
    src, expected = bad
    out = tmp_path / "out"
    result = convert_twitter_emoticon(src, out, progress=False)
    assert dict(result.skips) == expected["skips"]
    assert dict(result.changes) == expected["changes"]
    labels = read_labels(out / "labels.json")
    assert [lab.emoji for lab in labels] == fx.CLASSES  # the order of the given labels.json
    meta = read_metadata(out / "metadata.csv", labels)
    assert list(meta["id"]) == [f"t{n:03d}" for n in range(fx.EXPECTED_ROWS)]
    for row in meta.itertuples():
        n = int(row.id[1:])
        assert row.label == fx.CLASSES[n // fx.GOOD_PER_CLASS], row.id
        assert row.image == f"{row.id}.jpg"
        if n == 5:
            assert row.text == ("long " * 200).strip() and len(row.text) == MAX_TEXT - 1
        else:
            assert row.text == CLEAN_TEXTS[n % len(fx.TEXTS)], row.id
    assert Counter(meta["split"]) == {"train": 28, "val": 4, "test": 4}
    images = {name: Image.open(out / "images" / name) for name in meta["image"]}
    assert {(im.format, im.mode) for im in images.values()} == {("JPEG", "RGB")}
    assert max(max(im.size) for im in images.values()) == 512  # big_jpeg, downscaled
    exif_row = fx.GOOD_MAKERS.index(fx.exif_rotated_jpeg)
    assert images[f"t{exif_row:03d}.jpg"].size == (20, 60)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(meta["image"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out", "outside", "sibling"]
    table = result.summary()
    for reason, count in expected["skips"].items():
        assert any(line.split()[:2] == [reason, str(count)] for line in table.splitlines())
    assert "skipped: 20 rows" in table and "text-truncated" in table
    assert "outside-dataset       5  tweets.csv row 53 (id 'b-up'): '../outside" in table


def test_files_outside_the_dataset_are_never_opened(bad, tmp_path):
    src, expected = bad
    opened: list[str] = []
    WATCHING.append(opened)
    try:
        result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    finally:
        WATCHING.remove(opened)
    assert result.skips["outside-dataset"] == 5
    real = {str(Path(p).resolve()) for p in opened}
    assert str((src / "images" / "g001.jpg").resolve()) in real  # the hook sees the reads
    assert str(src / "tweets.csv") in real
    outside = [tmp_path / "outside", tmp_path / "sibling", Path("/etc")]
    assert not [p for p in real if any(Path(p).is_relative_to(o) for o in outside)]
    assert {str(p.resolve()) for p in expected["outside"]}.isdisjoint(real)


@pytest.mark.parametrize("cell", ["../../x.png", "/somewhere/x.png", "../../sib/x.png",
                                  "../../../etc/passwd", "images/../../../up.png"])
def test_find_image_refuses_paths_out_before_looking(tmp_path, cell):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    assert twitter.find_image(cell, [root, root / "images"], root) == "outside-dataset"
    assert twitter.find_image("nope.png", [root, root / "images"], root) == "missing"
    assert twitter.find_image("", [root], root) == "missing"


def test_a_symlinked_folder_inside_that_leads_out_is_outside(tmp_path):
    root, elsewhere = tmp_path / "d", tmp_path / "elsewhere"
    fx.rgb_jpeg((elsewhere / "a.jpg").parent.mkdir(parents=True) or elsewhere / "a.jpg")
    root.mkdir()
    (root / "images").symlink_to(elsewhere, target_is_directory=True)
    assert twitter.find_image("a", [root, root / "images"], root) == "outside-dataset"
    fx.rgb_jpeg(root / "b.jpg")
    assert twitter.find_image("b", [root / "images", root], root) == root / "b.jpg"


def test_rerun_does_nothing_and_force_rebuilds(bad, tmp_path):
    src, _ = bad
    out = tmp_path / "out"
    convert_twitter_emoticon(src, out, progress=False)
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    again = convert_twitter_emoticon(src, out, progress=False)
    assert again.frame is None and "nothing to do" in again.summary()
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp
    rebuilt = convert_twitter_emoticon(src, out, force=True, progress=False)
    assert len(rebuilt.frame) == fx.EXPECTED_ROWS and is_complete(out)


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(bad, tmp_path):
    src, _ = bad
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="no finished dataset .* pass --force"):
        convert_twitter_emoticon(src, out, progress=False)
    assert (out / "thesis.tex").read_text() == "precious"


def test_interrupted_conversion_leaves_nothing(bad, tmp_path, monkeypatch):
    src, _ = bad
    calls = []
    real = twitter.load_rgb

    def flaky(path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(twitter, "load_rgb", flaky)
    with pytest.raises(KeyboardInterrupt):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "outside", "sibling"]


def write_images(folder: Path, names: list[str]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fx.rgb_jpeg(folder / "images" / name, seed=i)


def test_utf16_tsv_with_split_names(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    text = "tweet\timg\temoticon\tset\nhello\ta.jpg\t😂\ttraining\nbye\tb.jpg\t🔥\tvalidation\n" \
           "hm\tc.jpg\t😂\tTest\n"
    (src / "tweets.tsv").write_bytes(text.encode("utf-16"))
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.frame[["id", "text", "label", "split"]].values.tolist() == [
        ["tweets-2", "hello", "😂", "train"], ["tweets-3", "bye", "🔥", "val"],
        ["tweets-4", "hm", "😂", "test"]]  # ids made from row numbers


def test_jsonl_and_class_names(tmp_path):
    src = tmp_path / "src"
    write_images(src, [f"{i}.jpg" for i in range(6)])
    lines = [json.dumps({"id": i, "content": f"café {i}", "file": f"{i}", "class": "sad"
                         if i % 2 else "happy"}, ensure_ascii=False) for i in range(6)]
    (src / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.frame[["id", "text", "label"]].values.tolist() == [
        [str(i), f"café {i}", "sad" if i % 2 else "happy"] for i in range(6)]
    assert [lab.emoji for lab in result.labels] == ["happy", "sad"]


def test_train_val_test_files_give_the_split(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    for split, image in (("train", "a"), ("valid", "b"), ("test", "c")):
        (src / f"{split}.csv").write_text(f"text,image,label\n{split} row,{image}.jpg,🔥\n",
                                          encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.frame[["text", "split"]].values.tolist() == [
        ["test row", "test"], ["train row", "train"], ["valid row", "val"]]


def test_several_tables_need_a_choice(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    body = "text,image,label\none,a.jpg,😂\ntwo,b.jpg,😂\nthree,c.jpg,😂\n"
    (src / "mine.csv").write_text(body, encoding="utf-8")
    (src / "other.csv").write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=r"found: mine.csv, other.csv. Pass --table"):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    result = convert_twitter_emoticon(src, tmp_path / "out", table=src / "mine.csv",
                                      progress=False)
    assert list(result.frame["text"]) == ["one", "two", "three"]


def test_labels_file_keeps_only_its_classes_in_its_order(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    (src / "keep.txt").write_text("🔥\n😂\n", encoding="utf-8")
    (src / "d.csv").write_text("text,image,label\none,a.jpg,😂\ntwo,b.jpg,🔥\nthree,c.jpg,😂\n"
                               "four,d.jpg,🤖\n", encoding="utf-8")
    result = convert_twitter_emoticon(src / "d.csv", tmp_path / "out", progress=False,
                                      labels_file=src / "keep.txt")
    assert dict(result.skips) == {"unknown-label": 1}
    assert [lab.emoji for lab in result.labels] == ["🔥", "😂"]
    with pytest.raises(DataError, match="--labels .*nope.txt does not exist"):
        convert_twitter_emoticon(src / "d.csv", tmp_path / "o2", labels_file=src / "nope.txt")


def table_case(src: Path, name: str, data: bytes) -> Path:
    write_images(src, ["a.jpg", "b.jpg"])
    (src / name).write_bytes(data)
    return src / name


MALFORMED = {  # name: (file, bytes, what the one line must say)
    "zero-byte": ("t.csv", b"", r"t.csv is empty; it needs a header line"),
    "header-only": ("t.csv", b"id,text,image,label\n", r"t.csv has a header but no rows"),
    "extra-field": ("t.csv", b"id,text,image,label\nx1,hi,a.jpg,a\nx2,yo,b.jpg,a,oops\n",
                    r"t.csv: the row 'x2,yo,b.jpg,a,oops' has 5 fields, the header 4; quote a "
                    r"field that holds ','"),
    "stray-quote": ("t.csv", b'id,text,image,label\nx1,hi,a.jpg,a\nx2,"so" funny,b.jpg,a\n',
                    r"t.csv line 3: ',' expected after '\"' \(a field with quotes must be "
                    r"quoted"),  # pandas alone dropped this row without a word
    "short-row": ("t.csv", b"id,text,image,label\nx1,hi,a.jpg,a\nx2,yo\n",
                  r"t.csv row 3: 2 fields, the header has 4; fill in the missing ones"),
    "invalid-utf8": ("t.csv", b"id,text,image,label\nx1,caf\xe9,a.jpg,a\n",
                     r"t.csv line 2: bytes that are not UTF-8 \(b'\\xe9'\); save the file as "
                     r"UTF-8"),
    "wrong-columns": ("t.csv", b"tweet,foo\nhello,bar\n",
                      r"t.csv: no image / label column. Found columns: tweet, foo"),
    "bad-json-line": ("t.jsonl", b'{"text": "a", "image": "a.jpg", "label": "x"}\n{oops\n',
                      r"t.jsonl line 2 is not valid JSON"),
    "unknown-split": ("t.csv", b"id,text,image,label,split\nx1,hi,a.jpg,a,holdout\n",
                      r"t.csv row 2 \(id 'x1'\): unknown split 'holdout'; use train, val or "
                      r"test"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_tables_are_one_line_with_exit_code_2(case, tmp_path, capsys):
    name, data, message = MALFORMED[case]
    table_case(tmp_path / "src", name, data)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "twitter-emoticon", "--from", str(tmp_path / "src"),
                           "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert __import__("re").search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing half-written


def test_missing_columns_list_every_accepted_name(tmp_path):
    path = table_case(tmp_path, "d.csv", b"tweet,foo\nhello,bar\n")
    with pytest.raises(DataError) as info:
        tables.map_columns(list(tables.read_table(path).columns), path)
    message = str(info.value)
    assert "image: one of image, image_path, img" in message
    assert "label: one of label, emoji, emoticon, class" in message
    assert "Rename the header line" in message


def test_twitter_cli_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "twitter-emoticon", "--from", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    code, _, err = run_cli(capsys, "twitter-emoticon", "--out", str(tmp_path / "o"))
    assert code == 2 and "give --from DIR, or --url URL with --sha256 HEX" in err


def test_twitter_cli_converts(bad, tmp_path, capsys):
    src, expected = bad
    code, out, _ = run_cli(capsys, "twitter-emoticon", "--from", str(src), "--out",
                           str(tmp_path / "o"), "--seed", "1", "--max-side", "32")
    assert code == 0 and f"wrote {tmp_path / 'o'}: {expected['rows']} rows" in out
    sizes = [Image.open(p).size for p in (tmp_path / "o" / "images").iterdir()]
    assert max(max(s) for s in sizes) == 32


def test_one_epoch_smoke_training_on_converted_bad_data(bad, tmp_path):
    src, _ = bad
    data = tmp_path / "data"
    convert_twitter_emoticon(src, data, progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep), "EMOLIB_PROFILE": "smoke"}
    proc = subprocess.run(
        [sys.executable, "-m", "emolib", "train", "--profile", "smoke", "--data", str(data),
         "--out", str(tmp_path / "run"), "--epochs", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # what the converter kept is what the run trained and tested on
    meta = read_metadata(data / "metadata.csv", read_labels(data / "labels.json"))
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"] == str(data) and run["profile"] == "smoke"
    assert [lab["emoji"] for lab in run["labels"]] == \
        [lab.emoji for lab in read_labels(data / "labels.json")]
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 1
    test = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert test["split"] == "test" and test["n"] == int((meta["split"] == "test").sum())
    assert f"test ({test['n']} posts): accuracy {test['accuracy']:.4f}" in proc.stdout


# ------------------------------------------------------------------ docs stay in sync


def test_book_page_documents_every_reason_and_column_name():
    page = (ROOT / "book" / "own_data.md").read_text(encoding="utf-8")
    for reason in [*rows.SKIP_REASONS, *rows.CHANGE_REASONS]:
        assert f"`{reason}`" in page, reason
    for names in tables.ALIASES.values():
        for name in names:
            assert f"`{name}`" in page, name
