"""The project's promises about itself: one set of dependencies, one test command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= {r for r in extra if not r.startswith("emolib")}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    norm = lambda reqs: {(_name(r), r[len(_name(r)):].strip()) for r in reqs}  # noqa: E731
    assert norm(pip) == norm(wanted)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_gitignore_keeps_build_output_out():
    ignored = (ROOT / ".gitignore").read_text().split()
    for path in (".venv/", "data/", "_build/", "__pycache__/"):
        assert path in ignored


def test_colab_extra_adds_only_what_colab_lacks():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert {_name(r) for r in extras["colab"]} == {"umap-learn"}  # + MiniLM, --no-deps
    assert "sphinx-mathjax-offline" in {_name(r) for r in extras["book"]}


def test_readme_explains_verify_and_ci_runs_it():
    readme = (ROOT / "README.md").read_text()
    assert "make verify" in readme
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^verify:", make, re.M) and "--nbval " in make
    assert "--nbval-sanitize-with notebooks/nbval_sanitize.cfg" in make
    workflows = ROOT / ".github" / "workflows"
    assert "make verify" in (workflows / "verify.yml").read_text()
    assert "make test" in (workflows / "ci.yml").read_text()
