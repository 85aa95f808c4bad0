import pandas as pd
import pytest

from emolib.layout import (
    DataError,
    Label,
    read_labels,
    read_metadata,
    validate_metadata,
)
from emolib.prepare.staging import write_labels, write_metadata

LABELS = [Label("😂", "face with tears of joy"), Label("❤️", "red heart")]


def frame(**changes):
    rows = {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "image": ["a.png", "b.png", "c.png"],
            "label": ["😂", "❤️", "😂"], "split": ["train", "val", "test"]}
    rows.update(changes)
    return pd.DataFrame(rows)


def test_valid_frame_gets_integer_labels_and_names_are_accepted():
    out = validate_metadata(frame(label=["😂", "red heart", "😂"]), LABELS)
    assert out["y"].tolist() == [0, 1, 0]


def test_wrong_columns_are_named_with_the_fix():
    bad = frame().rename(columns={"text": "tweet"})
    pattern = r"missing column\(s\) \['text'\].*rename or drop \['tweet'\]"
    with pytest.raises(DataError, match=pattern):
        validate_metadata(bad, LABELS)


@pytest.mark.parametrize("change, pattern", [
    ({"split": ["train", "dev", "test"]}, r"row 3 \(id 'b'\): unknown split 'dev'; use one of"),
    ({"label": ["😂", "🐍", "😂"]}, r"row 3 \(id 'b'\): unknown label '🐍'; add it to labels.json"),
    ({"id": ["a", "b", "a"]}, r"row 4: duplicate id 'a'; ids must be unique"),
    ({"image": ["a.png", " ", "c.png"]}, r"row 3 \(id 'b'\): empty image path"),
])
def test_bad_rows_are_named(change, pattern):
    with pytest.raises(DataError, match=pattern):
        validate_metadata(frame(**change), LABELS)


def test_round_trip_files(tmp_path):
    write_labels(tmp_path / "labels.json", LABELS)
    write_metadata(tmp_path / "metadata.csv", frame())
    labels = read_labels(tmp_path / "labels.json")
    assert labels == LABELS
    meta = read_metadata(tmp_path / "metadata.csv", labels)
    assert list(meta.columns) == ["id", "text", "image", "label", "split", "y"]


def test_missing_and_broken_labels_file(tmp_path):
    with pytest.raises(DataError, match="labels.json is missing"):
        read_labels(tmp_path / "labels.json")
    (tmp_path / "labels.json").write_text('[{"emoji": "😂"}, {"emoji": "😂"}]')
    with pytest.raises(DataError, match="lists an emoji twice"):
        read_labels(tmp_path / "labels.json")


@pytest.mark.parametrize("content, message", [
    ("not json", r"labels.json is not valid JSON \("),
    ("{}", r"must hold a non-empty list of \{emoji, name\} objects"),
    ("[]", r"must hold a non-empty list"),
    ('["😂"]', r"entry 0 must be an object with keys 'emoji' and 'name'"),
    ('[{"emoji": "😂"}, {"name": "x"}]', r"entry 1 must be an object"),
])
def test_broken_labels_files_are_named(tmp_path, content, message):
    (tmp_path / "labels.json").write_text(content)
    with pytest.raises(DataError, match=message):
        read_labels(tmp_path / "labels.json")


def test_a_label_without_a_name_is_named_by_its_emoji(tmp_path):
    (tmp_path / "labels.json").write_text('[{"emoji": "😂"}, {"emoji": 7, "name": 8}]')
    assert read_labels(tmp_path / "labels.json") == [Label("😂", "😂"), Label("7", "8")]


CSV = "id,text,image,label,split\n"


@pytest.mark.parametrize("content, message", [
    (b"", r"metadata.csv is empty: write a header line id,text,image,label,split and one "
          r"row per post$"),
    (CSV.encode(), r"metadata.csv has a header but no rows"),
    ((CSV + "a,hi,a.png,😂,train,extra\n").encode(),
     r"metadata.csv: the first row has more fields than the header; quote text that holds "
     r"commas$"),
    ((CSV + "a,hi,a.png,😂,train\nb," + "x" * 200_000 + ",a.png,😂,train\n").encode(),
     r"metadata.csv line 3: field larger than field limit \(131072\) \(a field with quotes"),
    ((CSV + 'a,hi,a.png,😂,train\nb,"quoted" then more,b.png,😂,train\n').encode(),
     r"metadata.csv line 3: ',' expected after '\"' \(a field with quotes must be quoted, "
     r"its quotes doubled: \"say \"\"hi\"\"\"\)$"),
    ((CSV + "b,ho,b.png,😂,train\na,hi,a.png,😂,train,x\n").encode(),
     r"the row with id 'a' has 6 fields, the header 5; quote text"),
    ((CSV + "b,ho,b.png,😂,train\nc,hu\n").encode(),
     r"metadata.csv row 3 has fewer fields than the header id,text,image,label,split"),
    (CSV.encode() + b"a,h\xffi,a.png,x,train\n",
     r"is not UTF-8 \(byte \d+: invalid start byte\); re-save it as UTF-8$"),
])
def test_malformed_metadata_is_named(tmp_path, content, message):
    (tmp_path / "metadata.csv").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_metadata(tmp_path / "metadata.csv", LABELS)


def test_missing_metadata_names_the_columns(tmp_path):
    with pytest.raises(DataError, match=r"metadata.csv is missing: a dataset needs metadata.csv "
                                        r"with columns id,text,image,label,split"):
        read_metadata(tmp_path / "metadata.csv", LABELS)


def test_extra_columns_are_dropped_and_every_value_is_text():
    out = validate_metadata(frame(extra=[1, 2, 3], id=[1, 2, 3]), LABELS)
    assert list(out.columns) == ["id", "text", "image", "label", "split", "y"]
    assert out["id"].tolist() == ["1", "2", "3"] and out["y"].dtype.kind == "i"


@pytest.mark.parametrize("change, pattern", [
    ({"id": ["a", " ", "c"]}, r"row 3: empty id; give every row a unique id"),
    ({"split": ["train", "val", "TEST"]}, r"row 4 \(id 'c'\): unknown split 'TEST'"),
    ({"label": ["😂", "❤️", "red"]}, r"row 4 \(id 'c'\): unknown label 'red'.*known: 😂 ❤️"),
])
def test_more_bad_rows_are_named(change, pattern):
    with pytest.raises(DataError, match=pattern):
        validate_metadata(frame(**change), LABELS)


def test_missing_columns_without_extras_say_only_what_is_missing():
    with pytest.raises(DataError, match=r"^metadata: missing column\(s\) \['split'\]; found "
                                        r"\['id', 'text', 'image', 'label'\]. The canonical "
                                        r"columns are id,text,image,label,split$"):
        validate_metadata(frame().drop(columns="split"), LABELS)


def test_errors_found_while_reading_name_the_file(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(CSV + "a,hi,a.png,😂,dev\n")
    with pytest.raises(DataError) as err:
        read_metadata(path, LABELS)
    assert str(err.value) == (f"{path} row 2 (id 'a'): unknown split 'dev'; use one of "
                              "train, val, test")


def test_quoted_fields_with_commas_quotes_and_newlines_are_read_whole(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(CSV + 'a,"say ""hi"", then\nbye",a.png,😂,train\nb,ok,b.png,😂,val\n')
    assert read_metadata(path, LABELS)["text"].tolist() == ['say "hi", then\nbye', "ok"]


def test_cells_are_text_as_written(tmp_path):
    """Ids keep their leading zeros; words pandas would read as missing stay words."""
    path = tmp_path / "metadata.csv"
    path.write_text(CSV + "007,NA,a.png,😂,train\n0.50,null,b.png,😂,val\n")
    meta = read_metadata(path, LABELS)
    assert meta["id"].tolist() == ["007", "0.50"]
    assert meta["text"].tolist() == ["NA", "null"]


def test_is_complete_needs_the_marker_and_the_table(tmp_path):
    from emolib.layout import COMPLETE, is_complete

    assert COMPLETE == ".complete"
    assert not is_complete(tmp_path)
    (tmp_path / ".complete").write_text("{}")
    assert not is_complete(tmp_path)
    (tmp_path / "metadata.csv").write_text(CSV)
    assert is_complete(tmp_path)
    (tmp_path / ".complete").unlink()
    assert not is_complete(tmp_path)


def test_write_atomic_ends_with_one_newline_and_leaves_no_temporary(tmp_path, monkeypatch):
    import os

    from emolib.layout import write_atomic

    target = tmp_path / "x.json"
    write_atomic(target, "{}")
    assert target.read_text() == "{}\n"
    write_atomic(target, "é\n")
    assert target.read_bytes() == "é\n".encode()  # UTF-8, not doubled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "é\n"  # the old file, whole


def test_csv_records_reads_the_separator_it_is_given(tmp_path):
    """Tab-separated tables (the twitter converter's TSV) split on tabs, not commas."""
    from emolib.layout import csv_records

    lines = ["id\ttext\n", 'a\thello, world\n', 'b\t"tab\there"\n']
    assert csv_records(lines, tmp_path / "t.tsv", sep="\t") == [
        ["id", "text"], ["a", "hello, world"], ["b", "tab\there"]]
    assert csv_records(["a,b\n"], tmp_path / "t.csv") == [["a", "b"]]  # comma by default
