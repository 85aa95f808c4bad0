"""The book as a reader meets it: offline, linked, cited, and saying where it lives.

Static checks of the notebooks and the book's configuration, plus one strict build of the
book from the committed outputs (no execution; skipped where jupyter-book or the bundled
MathJax is not installed).
"""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from refresh_run_times import executed_profile, stated_seconds  # noqa: E402
from set_repository import pages_url  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
REPO = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"].get("branch", "main")
BIB_KEYS = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(
    encoding="utf-8"), re.M))
MAX_IGNORED_OUTPUTS = 3  # cells tagged nbval-ignore-output, each with its reason
MODULE_OF = {"00": "model.py", "01": "data.py", "02": "encoders.py", "03": "encoders.py",
             "04": "losses.py", "05": "fusion.py", "06": "train.py", "07": "metrics.py",
             "08": "retrieval.py"}


def load(path):
    return nbformat.read(path, as_version=4)


def cells(path, kind):
    return [c for c in load(path).cells if c.cell_type == kind]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def markdown_pages():
    return sorted((ROOT / "book").glob("*.md"))


# --- code the book can show -------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_books_code_column(path):
    long_lines = [line for c in cells(path, "code") for line in c.source.splitlines()
                  if len(line) > 80]
    assert not long_lines, f"{len(long_lines)} code lines over 80 characters: {long_lines[:3]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbval_markers_are_tags_not_comments(path):
    code = cells(path, "code")
    assert not [c for c in code if re.search(r"^\s*#\s*NBVAL_", c.source, re.M)], \
        "use the cell tag (nbval-check-output, ...), not a comment the book would show"
    assert sum("nbval-check-output" in tags(c) for c in code) >= 2


def test_ignored_outputs_are_few_and_explained():
    ignored = [(p.stem, c) for p in NOTEBOOKS for c in cells(p, "code")
               if "nbval-ignore-output" in tags(c)]
    assert len(ignored) <= MAX_IGNORED_OUTPUTS, [name for name, _ in ignored]
    for name, cell in ignored:
        first = cell.source.splitlines()[0]
        assert re.match(r"# nbval-ignore-output: \S.{9,}", first), \
            f"{name}: the first line must say why its output is not compared: {first!r}"


# --- the box at the top of each chapter ---------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_opens_with_a_header_box(path):
    first = load(path).cells[0].source
    box = re.search(r"^:::\{admonition\}.*?^:::$", first, re.S | re.M)
    assert box, "first cell: a :::{admonition} box"
    text = box.group(0)
    for part in ("**You will learn**", "**Prerequisites:**", "**The code:**",
                 "**Run time:**", "`gpu` profile"):
        assert part in text, part
    module = MODULE_OF[path.stem[:2]]
    assert f"({REPO}/blob/{BRANCH}/emolib/{module})" in text, f"link to emolib/{module}"
    assert stated_seconds(text) is not None, "the measured `cpu` run time"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stated_cpu_run_time_is_the_measured_one(path):
    """Re-checked whenever papermill re-executes a chapter (scripts/refresh_run_times.py
    rewrites the box; make notebooks runs it)."""
    nb = load(path)
    duration = nb.metadata.get("papermill", {}).get("duration")
    profile, _ = executed_profile(nb)
    if duration is None or profile != "cpu":
        pytest.skip(f"last executed with profile {profile}: no cpu time to compare")
    stated = stated_seconds(nb.cells[0].source)
    rounding = 2.5 if stated < 120 else 30  # the box rounds to 5 s, or to whole minutes
    assert abs(stated - duration) <= 0.3 * duration + rounding, \
        f"box says {stated:.0f} s, papermill measured {duration:.0f} s: " \
        "run python scripts/refresh_run_times.py"


# --- links and citations -----------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapters_link_to_chapters_and_pages_that_exist(path):
    text = "\n".join(c.source for c in cells(path, "markdown"))
    chapters = re.findall(r"\]\((\d\d_\w+\.ipynb)(?:#[\w-]+)?\)", text)
    assert chapters, "at least one link to another chapter"
    for target in chapters:
        assert (ROOT / "notebooks" / target).is_file(), target
    for page in re.findall(r"\]\(\.\./book/([\w/]+\.md)(?:#[\w-]+)?\)", text):
        assert (ROOT / "book" / page).is_file(), page
    assert "](../book/notation.md)" in text, "the notation page"
    bare = re.findall(r"(?<![\[\w])[Cc]hapter \d\d(?![\d\]])", text)
    assert all(f"chapter {path.stem[:2]}" == b.lower() for b in bare), \
        f"a chapter mentioned without a link: {bare}"


def cite_keys(text):
    return [k.strip() for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
            for k in group.split(",")]


def test_every_citation_has_an_entry_with_a_doi_or_url():
    cited = {k for p in NOTEBOOKS for c in cells(p, "markdown") for k in cite_keys(c.source)}
    cited |= {k for page in markdown_pages() for k in cite_keys(page.read_text("utf-8"))}
    assert cited and cited <= BIB_KEYS, sorted(cited - BIB_KEYS)
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    for entry in re.split(r"\n(?=@)", bib.strip()):
        key = re.match(r"@\w+\{([^,]+),", entry).group(1)
        assert re.search(r"^\s*(doi|url)\s*=", entry, re.M), f"{key}: no DOI or URL"


def test_no_author_year_mention_without_a_citation():
    pattern = re.compile(r"\b[A-Z][a-z]+(?: et al\.| & [A-Z][a-z]+),? \(?(?:19|20)\d\d\b")
    for path in NOTEBOOKS:
        for c in cells(path, "markdown"):
            assert not pattern.search(c.source), (path.stem, pattern.search(c.source).group(0))


def test_the_paper_is_linked_to_arxiv():
    overview = "\n".join(c.source for c in cells(NOTEBOOKS[0], "markdown"))
    assert "https://arxiv.org/abs/2408.02571" in overview
    assert "{cite:p}`pandey2024contrastive`" in overview


# --- one repository URL ---------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_install_cell_and_source_links_follow_the_repository_url(path):
    nb = load(path)
    slug = REPO.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/notebooks/{path.name}"
    assert f"]({badge})" in nb.cells[0].source
    install = nb.cells[1].source
    assert f'REPO = "{REPO}"' in install and 'f"emolib[colab] @ git+{REPO}"' in install
    text = json.dumps([c.source for c in nb.cells])
    for url in re.findall(r"https://github\.com/[\w./-]+", text):
        assert url.startswith(REPO + "/") or url == REPO, url
    for module in re.findall(re.escape(REPO) + rf"/blob/{BRANCH}/(emolib/\w+\.py)", text):
        assert (ROOT / module).is_file(), module


def test_published_address_and_readme_follow_the_repository_url():
    assert CONFIG["html"]["baseurl"] == pages_url(REPO)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert pages_url(REPO) in readme and REPO in readme
    assert "scripts/set_repository.py" in readme, "README says how a fork changes it"
    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8")
    assert "-W" in workflow and "download.pytorch.org/whl/cpu" in workflow


def test_launch_buttons_open_the_committed_notebooks():
    """sphinx-book-theme builds <colab>/github/<slug>/blob/<branch>/<path_to_book>/<page>.ipynb
    (header_buttons/launch.py); the page notebooks/NN_name must be the committed file."""
    assert CONFIG["launch_buttons"]["colab_url"]
    relpath = CONFIG["repository"].get("path_to_book", "").strip("/")
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    pages = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    chapters = [p for p in pages if p.startswith("notebooks/")]
    assert len(chapters) == len(NOTEBOOKS)
    ignored = subprocess.run(["git", "check-ignore", "-q", "book/notebooks/x.ipynb"],
                             cwd=ROOT).returncode == 0 if shutil.which("git") else True
    assert ignored, "book/notebooks/ is a build copy and stays out of git"
    for page in chapters:
        target = f"{relpath}/{page}.ipynb" if relpath else f"{page}.ipynb"
        assert (ROOT / target).is_file(), f"the launch button would open {target}"
        assert not target.startswith("book/"), target


def test_the_book_loads_nothing_from_the_network():
    cfg = CONFIG["sphinx"]
    assert "sphinx-mathjax-offline" in cfg["extra_extensions"]
    assert "mathjax_path" not in cfg.get("config", {}), "the bundled MathJax sets it"
    assert (ROOT / "book" / "_static" / "colab-badge.svg").is_file()
    ext = (ROOT / "book" / "_ext" / "emolib_book.py").read_text(encoding="utf-8")
    assert "https://colab.research.google.com/assets/colab-badge.svg" in ext
    for page in markdown_pages():
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"!\[[^\]]*\]\(https?://|<img[^>]*src=\"https?://", text), page


# --- nbval's sanitizer -------------------------------------------------------------------------

def sanitize_rules():
    from nbval.plugin import get_sanitize_patterns
    text = (ROOT / "notebooks" / "nbval_sanitize.cfg").read_text(encoding="utf-8")
    return [(re.compile(regex), replace) for regex, replace in get_sanitize_patterns(text)]


def sanitize(text, rules):
    for regex, replace in rules:
        text = regex.sub(replace, text)
    return text


def output_texts():
    for path in NOTEBOOKS:
        for cell in cells(path, "code"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    yield out["text"]
                elif "text/plain" in out.get("data", {}):
                    yield out["data"]["text/plain"]


TIMING = re.compile(r"\d(?:\.\d+)?\s?(?:it/s|s/it|samples/s|ms/batch|ms/step)|\[\d\d:\d\d<"
                    r"|\d+(?:\.\d+)?x faster|\b\d+(?:\.\d+)?\s?s\b(?=[\s,;)]|$)|\d{4}-\d\d-\d\d")
RESULT = re.compile(r"(?:loss|acc|MCC|accuracy|ceiling|chance)[ =:]+-?\d+\.\d+|\(\d+, \d+\)"
                    r"|\d+ posts|\d+ test posts")


def test_sanitizer_on_the_committed_outputs():
    rules = sanitize_rules()
    texts = list(output_texts())
    timed = [t for t in texts if TIMING.search(t)]
    assert any("it/s" in t for t in timed) and any("samples/s" in t for t in timed), \
        "the committed outputs hold tqdm bars and throughputs to normalise"
    for text in timed:
        clean = sanitize(text, rules)
        assert not TIMING.search(clean), (text[:200], clean[:200])
    for text in texts:  # results survive: every metric, shape and count is still there
        assert RESULT.findall(sanitize(text, rules)) == RESULT.findall(text), text[:200]


def test_sanitizer_on_examples():
    rules = sanitize_rules()
    cases = {
        "epoch 2/3: 100%|██████████| 75/75 [00:28<00:00,  2.79it/s, loss=2.591]":
            "epoch 2/3: 100%|██████████| 75/75 [<time>, <rate>, loss=2.591]",
        "epoch 1: loss 3.298  val acc 0.723  val MCC 0.693  (26s, 182 samples/s)":
            "epoch 1: loss 3.298  val acc 0.723  val MCC 0.693  (<time>s, <rate> samples/s)",
        "per item: 47.3 ms/batch | cached: 0.45 ms/batch | cached is 104x faster (32 posts)":
            "per item: <rate> ms/batch | cached: <rate> ms/batch | cached is <ratio>x faster "
            "(32 posts)",
        "UMAP of 1200 points in 33 s": "UMAP of 1200 points in <time> s",
        "run: 258 s in this call, took 0:00:26 on 2026-11-26": "run: <time> s in this call, "
            "took <time> on <date>",
        "{'python': '3.11.7', 'torch': '2.14.1+cu130', 'cpu_threads': '2'}":
            "{'python': '3.11.7', 'torch': '2.14.1', 'cpu_threads': '2'}",
        "test accuracy 0.932, MCC 0.922; val acc 0.932": "test accuracy 0.932, MCC 0.922; "
            "val acc 0.932",
        "(chance 0.25, standard error about 0.031); |diff| / s.e.":
            "(chance 0.25, standard error about 0.031); |diff| / s.e.",
    }
    for raw, want in cases.items():
        assert sanitize(raw, rules) == want


# --- the strict build ----------------------------------------------------------------------------

BUILD_TOOLS = all(importlib.util.find_spec(m) for m in ("jupyter_book",
                                                          "sphinx-mathjax-offline"))


@pytest.mark.skipif(not BUILD_TOOLS, reason="jupyter-book or sphinx-mathjax-offline missing")
def test_book_builds_with_warnings_as_errors_and_offline(tmp_path):
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "notebooks"))
    (book / "notebooks").mkdir()
    for path in NOTEBOOKS:
        shutil.copy(path, book / "notebooks")
    jb = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", str(book), "-W", "--keep-going"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    html = book / "_build" / "html"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<(?:img|script)[^>]*\ssrc=\"https?://", text), page.name
    chapter = (html / "notebooks" / f"{NOTEBOOKS[4].stem}.html").read_text(encoding="utf-8")
    slug = REPO.removeprefix("https://github.com/")
    launch = f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/notebooks/"
    assert set(re.findall(r'href="(https://colab[^"]+)"', chapter)) == \
        {f"{launch}{NOTEBOOKS[4].name}"}, "badge and rocket button open the committed notebook"
    for page in html.rglob("*.html"):  # every Colab link of the book opens a committed file
        for url in re.findall(r'href="https://colab\.research\.google\.com/github/[^"]+/blob/'
                              rf'{BRANCH}/([^"]+)"', page.read_text(encoding="utf-8")):
            assert (ROOT / url).is_file(), f"{page.name}: Colab would open {url}"
    references = (html / "references.html").read_text(encoding="utf-8")
    assert not re.search(r"\[[A-Z][A-Za-z+]{1,5}\d\d\]", references), "no [BBRS18] labels"
    assert "Radford et al., 2021" in references
