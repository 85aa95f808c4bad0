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
