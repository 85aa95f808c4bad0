"""The one staging helper every writer uses, and the boundary: the taught core never
imports emolib.prepare."""

import ast
from pathlib import Path

import pandas as pd
import pytest

from emolib.layout import COMPLETE, DataError, Label, is_complete
from emolib.prepare.staging import build, needs_build

ROOT = Path(__file__).resolve().parents[1]
LABELS = [Label("😂", "face with tears of joy"), Label("❤️", "red heart")]


def writer(label: str = "😂", fail: BaseException | None = None):
    def write(tmp: Path):
        (tmp / "images" / "a.jpg").write_bytes(b"x")
        if fail is not None:
            raise fail
        rows = pd.DataFrame({"id": ["a"], "text": ["hi"], "image": ["a.jpg"],
                             "label": [label], "split": ["train"]})
        return rows, LABELS, {"source": "test", "label": label}
    return write


def test_build_writes_everything_and_the_marker_last(tmp_path):
    build(tmp_path / "d", writer())
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        COMPLETE, "images", "labels.json", "metadata.csv"]
    assert (tmp_path / "d" / "metadata.csv").read_text(encoding="utf-8") == \
        "id,text,image,label,split\na,hi,a.jpg,😂,train\n"
    assert is_complete(tmp_path / "d") and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("fail", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_build_leaves_nothing_half_written(tmp_path, fail):
    with pytest.raises(type(fail)):
        build(tmp_path / "d", writer(fail=fail))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rebuild_keeps_the_old_dataset(tmp_path):
    build(tmp_path / "d", writer())
    before = (tmp_path / "d" / COMPLETE).read_text()
    with pytest.raises(DataError, match="unknown label '🐍'"):  # validated before the swap
        build(tmp_path / "d", writer(label="🐍"))
    assert (tmp_path / "d" / COMPLETE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    build(tmp_path / "d", writer(label="❤️"))  # a good rebuild replaces it
    assert '"label": "❤️"' in (tmp_path / "d" / COMPLETE).read_text(encoding="utf-8")


def test_leftovers_of_an_interrupted_run_are_cleared(tmp_path):
    (tmp_path / ".d.partial" / "images").mkdir(parents=True)
    (tmp_path / ".d.partial" / "images" / "stale.jpg").write_bytes(b"x")
    build(tmp_path / "d", writer())
    assert sorted(p.name for p in (tmp_path / "d" / "images").iterdir()) == ["a.jpg"]


def test_needs_build(tmp_path):
    assert needs_build(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    assert needs_build(tmp_path / "empty")
    build(tmp_path / "done", writer())
    assert not needs_build(tmp_path / "done") and needs_build(tmp_path / "done", force=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="holds no finished dataset .* pass --force"):
        needs_build(tmp_path / "mine")
    assert needs_build(tmp_path / "mine", force=True)


CORE = ["config", "data", "encoders", "losses", "fusion", "model", "train", "metrics",
        "layout", "text", "images", "synth"]


@pytest.mark.parametrize("module", CORE)
def test_the_taught_core_never_imports_prepare(module):
    tree = ast.parse((ROOT / "emolib" / f"{module}.py").read_text(encoding="utf-8"))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [f"{node.module}.{alias.name}" for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module for alias in node.names]
    assert not [n for n in names if n.startswith("emolib.prepare")]
