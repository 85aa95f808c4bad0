"""scripts/nbtidy.py: executed notebooks keep each progress bar's last state, not every refresh."""

import io
import sys
from pathlib import Path

import nbformat
import pytest
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from nbtidy import main, resolve_carriage_returns, tidy_notebook, tidy_outputs  # noqa: E402


class ChunkRecorder(io.StringIO):
    """Records each write as papermill does: one stream output per flush of the kernel."""

    def __init__(self):
        super().__init__()
        self.chunks: list[str] = []

    def write(self, s):
        if s:
            self.chunks.append(s)
        return len(s)


def stream(name, text):
    return nbformat.v4.new_output("stream", name=name, text=text)


@pytest.mark.parametrize("raw, shown", [
    ("plain\ntext\n", "plain\ntext\n"),
    ("abc\rX", "Xbc"),                          # overwrite from column 0, like a terminal
    ("10%\r50%\r100%\n", "100%\n"),
    ("bar 100%\r        \r", "bar 100%"),       # a bar that erased itself keeps its last state
    ("a\rb\nc\rd\n", "b\nd\n"),
    ("trailing   \n", "trailing\n"),
])
def test_resolve_carriage_returns(raw, shown):
    assert resolve_carriage_returns(raw) == shown


def test_real_tqdm_bars_collapse_to_their_final_state():
    rec = ChunkRecorder()
    for epoch in (1, 2):
        for _ in tqdm(range(50), desc=f"epoch {epoch}", file=rec, leave=False, mininterval=0,
                      ascii=True):
            pass
    outputs = [stream("stderr", c) for c in rec.chunks]
    outputs.insert(len(outputs) // 2, stream("stdout", "epoch 1 done\n"))
    assert len(outputs) > 100
    tidy = tidy_outputs(outputs)
    assert [o["name"] for o in tidy] == ["stderr", "stdout", "stderr"]
    assert tidy[1]["text"] == "epoch 1 done\n"
    for o in (tidy[0], tidy[2]):
        assert "\r" not in o["text"]
    last = [line for o in tidy for line in o["text"].splitlines() if "epoch 2" in line]
    assert last and "50/50" in last[-1] and "100%" in last[-1]


def test_tidy_notebook_in_place_keeps_other_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})
    nb.cells = [nbformat.v4.new_markdown_cell("# t"),
                nbformat.v4.new_code_cell("x", outputs=[
                    stream("stderr", "\r 0%"), stream("stderr", "\r50%"), figure,
                    stream("stderr", "\r 9%"), stream("stderr", "\r99%\n")])]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert tidy_notebook(path) == 2
    out = nbformat.read(path, as_version=4).cells[1].outputs
    assert [o["output_type"] for o in out] == ["stream", "display_data", "stream"]
    assert out[0]["text"] == "50%" and out[2]["text"] == "99%\n"
    assert tidy_notebook(path) == 0                  # idempotent


def test_cli_errors_on_a_missing_notebook(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
