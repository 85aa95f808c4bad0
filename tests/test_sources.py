"""Converters (emolib.prepare): instagram from local parquet, twitter-emoticon from folders
with every planted fault; malformed tables through the CLI; files outside never opened.
"""

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import fixtures_bad_data as fx
import pytest
from PIL import Image

from emolib.cli import main
from emolib.images import REASONS
from emolib.layout import DataError, is_complete, read_labels, read_metadata
from emolib.prepare import staging, twitter
from emolib.prepare.instagram import convert_instagram
from emolib.prepare.staging import emoji_kind, resolve_label, stratified_split
from emolib.prepare.twitter import convert_twitter_emoticon
from emolib.text import find_emoji

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
    def kinds(caption: str) -> set[str]:
        return {emoji_kind(e) for e in find_emoji(caption)}

    assert kinds("nice 👍🏽 👍 👍🏻") == {"👍"}
    assert kinds("love ❤ and ❤️") == {"❤️"}
    assert kinds("😂 ❤️") == {"😂", "❤️"}
    assert kinds("no emoji here") == set()


def test_labels_spelled_as_emoji_names():
    assert resolve_label(":fire:") == "🔥"
    assert resolve_label(":face_with_tears_of_joy:") == "😂"
    assert resolve_label("❤") == "❤️"
    assert resolve_label("joy") == "joy"  # names without colons stay class names
    assert resolve_label("face_with_tears_of_joy") == "face_with_tears_of_joy"
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


def test_split_of_tiny_classes_is_one_rule_and_fills_every_split():
    for labels in (["a", "a", "a", "b", "c"], ["a"] * 5 + ["b"] * 4, list("abc")):
        split = stratified_split(labels, seed=0)
        assert Counter(split)["val"] == Counter(split)["test"] == max(1, round(len(labels) / 10))
    assert stratified_split(["a"] * 9 + ["b"], seed=1)[-1] == "train"  # a class of one
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
                            caption_col: str = "caption", image_col: str = "image") -> Path:
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
    assert list(meta["image"]) == [f"{i:06d}.jpg" for i in range(1, 10)]  # numbered as kept
    assert Counter(meta["split"]) == {"train": 7, "val": 1, "test": 1}
    for name in meta["image"]:
        assert Image.open(tmp_path / "ig" / "images" / name).mode == "RGB"
    marker = json.loads((tmp_path / "ig" / ".complete").read_text(encoding="utf-8"))
    assert marker["source"] == "instagram" and marker["skipped"] == INSTAGRAM_SKIPS
    assert marker["rows"] == 9 and marker["top_k"] == 2


def test_instagram_raw_bytes_column_and_max_posts(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts(), struct_images=False)
    result = convert_instagram(raw, tmp_path / "ig", top_k=2, max_posts=4, progress=False)
    assert list(result.frame["id"]) == ["ig000001", "ig000002", "ig000003", "ig000004"]


def test_instagram_without_the_documented_columns_lists_what_exists(tmp_path):
    raw = write_instagram_parquet(tmp_path / "raw", instagram_posts(), caption_col="text",
                                  image_col="img")
    with pytest.raises(DataError, match=r"lacks the 'image' and 'caption' columns of kkcosmos/"
                                        r"instagram-images-with-captions; its columns are: "
                                        r"likes, text, img$"):
        convert_instagram(raw, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="no .parquet files"):
        convert_instagram(tmp_path / "nothing", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="no class: --top-k is 0"):
        convert_instagram(write_instagram_parquet(tmp_path / "ok", instagram_posts()),
                          tmp_path / "out", top_k=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok", "raw"]  # nothing half-written


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
    labels = read_labels(out / "labels.json")
    assert [lab.emoji for lab in labels] == fx.CLASSES  # the order of the given labels.json
    meta = read_metadata(out / "metadata.csv", labels)
    assert list(meta["id"]) == [f"t{n:03d}" for n in range(fx.EXPECTED_ROWS)]
    for row in meta.itertuples():
        n = int(row.id[1:])
        assert row.label == fx.CLASSES[n // fx.GOOD_PER_CLASS], row.id
        assert row.image == f"{n + 1:06d}.jpg"  # numbered in the order kept
        if n == 5:
            assert row.text == ("long " * 500).strip()  # long texts are kept whole
        else:
            assert row.text == CLEAN_TEXTS[n % len(fx.TEXTS)], row.id
    assert Counter(meta["split"]) == {"train": 28, "val": 4, "test": 4}
    images = {name: Image.open(out / "images" / name) for name in meta["image"]}
    assert {(im.format, im.mode) for im in images.values()} == {("JPEG", "RGB")}
    assert max(max(im.size) for im in images.values()) == 512  # big_jpeg, downscaled
    exif_row = fx.GOOD_MAKERS.index(fx.exif_rotated_jpeg)
    assert images[f"{exif_row + 1:06d}.jpg"].size == (20, 60)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(meta["image"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out", "outside", "sibling"]
    table = result.summary()
    for reason, count in expected["skips"].items():
        assert any(line.split()[:2] == [reason, str(count)] for line in table.splitlines())
    assert "skipped: 20 rows" in table
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
    assert twitter.find_image("a\x00.png", [root], root) == "missing"
    assert twitter.find_image("x" * 5000 + ".png", [root], root) == "missing"  # too long


def test_a_symlinked_folder_inside_that_leads_out_is_outside(tmp_path):
    root, elsewhere = tmp_path / "d", tmp_path / "elsewhere"
    fx.rgb_jpeg((elsewhere / "a.jpg").parent.mkdir(parents=True) or elsewhere / "a.jpg")
    root.mkdir()
    (root / "images").symlink_to(elsewhere, target_is_directory=True)
    assert twitter.find_image("a.jpg", [root, root / "images"], root) == "outside-dataset"
    fx.rgb_jpeg(root / "b.jpg")
    assert twitter.find_image("b.jpg", [root, root / "images"], root) == root / "b.jpg"


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
    real = staging.load_rgb

    def flaky(path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(staging, "load_rgb", flaky)
    with pytest.raises(KeyboardInterrupt):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "outside", "sibling"]


def write_images(folder: Path, names: list[str]) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fx.rgb_jpeg(folder / "images" / name, seed=i)


def test_tsv_with_split_names_in_any_case(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    text = "Text\tImage\tLabel\tSplit\nhello\ta.jpg\t😂\tTrain\nbye\tb.jpg\t🔥\tVAL\n" \
           "hm\timages/c.jpg\t😂\ttest\n"
    (src / "tweets.tsv").write_text(text, encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.frame[["id", "text", "label", "split"]].values.tolist() == [
        ["row-2", "hello", "😂", "train"], ["row-3", "bye", "🔥", "val"],
        ["row-4", "hm", "😂", "test"]]  # ids made from row numbers


def test_class_names_and_a_table_in_a_subfolder(tmp_path):
    src = tmp_path / "src"
    write_images(src / "inner", [f"{i}.jpg" for i in range(6)])
    rows = "".join(f"{i},café {i},{i}.jpg,{'sad' if i % 2 else 'happy'}\n" for i in range(6))
    (src / "inner" / "posts.csv").write_text("id,text,image,label\n" + rows, encoding="utf-8")
    result = convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    assert result.frame[["id", "text", "label"]].values.tolist() == [
        [str(i), f"café {i}", "sad" if i % 2 else "happy"] for i in range(6)]
    assert [lab.emoji for lab in result.labels] == ["happy", "sad"]


def test_several_tables_need_a_choice(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg"])
    body = "text,image,label\none,a.jpg,😂\ntwo,b.jpg,😂\nthree,c.jpg,😂\n"
    (src / "mine.csv").write_text(body, encoding="utf-8")
    (src / "other.csv").write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=r"src needs one .csv or .tsv table; found: mine.csv, "
                                        r"other.csv. Pass --table FILE"):
        convert_twitter_emoticon(src, tmp_path / "out", progress=False)
    result = convert_twitter_emoticon(src, tmp_path / "out", table=src / "mine.csv",
                                      progress=False)
    assert list(result.frame["text"]) == ["one", "two", "three"]


def test_labels_file_keeps_only_its_classes_in_its_order(tmp_path):
    src = tmp_path / "src"
    write_images(src, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    keep = [{"emoji": "🔥", "name": "fire"}, {"emoji": "😂", "name": "joy"}]
    (tmp_path / "keep.json").write_text(json.dumps(keep), encoding="utf-8")
    (src / "d.csv").write_text("text,image,label\none,a.jpg,😂\ntwo,b.jpg,🔥\nthree,c.jpg,😂\n"
                               "four,d.jpg,🤖\n", encoding="utf-8")
    result = convert_twitter_emoticon(src / "d.csv", tmp_path / "out", progress=False,
                                      labels_file=tmp_path / "keep.json")
    assert dict(result.skips) == {"unknown-label": 1}
    assert [lab.emoji for lab in result.labels] == ["🔥", "😂"]
    with pytest.raises(DataError, match=r"nope.json is missing: write labels.json"):
        convert_twitter_emoticon(src, tmp_path / "o2", labels_file=src / "nope.json")
    (tmp_path / "keep.txt").write_text("🔥\n😂\n", encoding="utf-8")  # no longer a format
    with pytest.raises(DataError, match=r"keep.txt is not valid JSON"):
        convert_twitter_emoticon(src, tmp_path / "o2", labels_file=tmp_path / "keep.txt")


def table_case(src: Path, name: str, data: bytes) -> Path:
    write_images(src, ["a.jpg", "b.jpg"])
    (src / name).write_bytes(data)
    return src / name


MALFORMED = {  # name: (file, bytes, what the one line must say)
    "zero-byte": ("t.csv", b"", r"t.csv is empty; it needs a header line"),
    "header-only": ("t.csv", b"id,text,image,label\n", r"t.csv has a header but no rows"),
    "extra-field": ("t.csv", b"id,text,image,label\nx1,hi,a.jpg,a\nx2,yo,b.jpg,a,oops\n",
                    r"t.csv row 3: 5 fields, the header has 4; quote a field that holds ','"),
    "stray-quote": ("t.csv", b'id,text,image,label\nx1,hi,a.jpg,a\nx2,"so" funny,b.jpg,a\n',
                    r"t.csv line 3: ',' expected after '\"' \(a field with quotes must be "
                    r"quoted"),  # lenient csv merged the quote into the field
    "short-row": ("t.csv", b"id,text,image,label\nx1,hi,a.jpg,a\nx2,yo\n",
                  r"t.csv row 3: 2 fields, the header has 4; .* fill in the missing ones"),
    "invalid-utf8": ("t.csv", b"id,text,image,label\nx1,caf\xe9,a.jpg,a\n",
                     r"t.csv line 2: bytes that are not UTF-8 \(b'\\xe9'\); save the file as "
                     r"UTF-8"),
    "utf16": ("t.csv", "text,image,label\nhi,a.jpg,a\n".encode("utf-16"),
              r"t.csv line 1: bytes that are not UTF-8 \(b'\\xff'\)"),
    "wrong-columns": ("t.csv", b"tweet,foo\nhello,bar\n",
                      r"t.csv: no text / image / label column \(found: tweet, foo\); name the "
                      r"columns id,text,image,label,split"),
    "unknown-split": ("t.csv", b"id,text,image,label,split\nx1,hi,a.jpg,a,holdout\n",
                      r"t.csv row 2: unknown split 'holdout'; use train, val or test"),
    "empty-split-cell": ("t.csv", b"text,image,label,split\nhi,a.jpg,a,train\nyo,b.jpg,a,\n",
                         r"t.csv row 3: unknown split ''"),
    "json-lines": ("t.jsonl", b'{"text": "a", "image": "a.jpg", "label": "x"}\n',
                   r"t.jsonl: give the table as a .csv or .tsv file \(JSON Lines converts with "
                   r"pandas.read_json"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_tables_are_one_line_with_exit_code_2(case, tmp_path, capsys):
    name, data, message = MALFORMED[case]
    table = table_case(tmp_path / "src", name, data)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "twitter-emoticon", "--from", str(tmp_path / "src"),
                           "--table", str(table), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing half-written


def test_twitter_cli_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "twitter-emoticon", "--from", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "found: no folder" in err
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


#: Why a converter skips a row: the image reasons of emolib.images and the converters' own.
SKIP_REASONS = [*REASONS, "outside-dataset", "empty-text", "missing-label", "unknown-label",
                "duplicate-id", "no-caption", "no-emoji", "mixed-emoji", "rare-emoji"]


def test_book_page_documents_every_reason():
    page = (ROOT / "book" / "own_data.md").read_text(encoding="utf-8")
    for reason in SKIP_REASONS:
        assert f"`{reason}`" in page, reason
    code = "".join(p.read_text(encoding="utf-8") for p in ROOT.glob("emolib/prepare/*.py"))
    for reason in re.findall(r'"([a-z]+(?:-[a-z]+)+)" if', code):  # the converters' reasons
        assert reason in SKIP_REASONS, reason
