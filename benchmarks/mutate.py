"""Mutation testing of the taught core (mutmut): each module against its own fast tests.

mutmut changes one small thing at a time in a module (``<`` to ``<=``, ``+ 1`` to ``+ 2``,
a keyword argument dropped, ``"val"`` to ``"XXvalXX"``, ...) and runs the tests that call
the changed function; a mutant no test notices *survived*. Each module is mutated in its
own copy of the repository, with only its own test files selected (no notebooks, no
multi-process tests), so the whole run fits a 2-core machine::

    make mutate                                   # every module of CORE
    python benchmarks/mutate.py losses metrics    # some of them

Writes ``benchmarks/results/mutation.json``: killed, survived, equivalent (survivors
explained in benchmarks/MUTATION.md, under "Equivalent mutants"), the score
killed / (killed + survived) over the non-equivalent mutants, per module too, the wall
time and every survivor with its diff. A mutant that no selected test reaches, or that
times out, is counted as survived or killed as mutmut says ("no tests" counts as
survived; "timeout" as killed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
NOTE = ROOT / "benchmarks" / "MUTATION.md"

#: module -> its own fast test files (and tests of those files left out, with why)
CORE: dict[str, dict] = {
    "losses": {"tests": ["tests/test_losses.py"],
               "deselect": ["tests/test_losses.py::"
                            "test_two_gloo_processes_equal_one_process_on_the_full_batch"]},
    "fusion": {"tests": ["tests/test_fusion_model.py"]},
    "model": {"tests": ["tests/test_fusion_model.py"]},
    "train": {"tests": ["tests/test_train.py", "tests/test_study_recipe.py",  # schedule
                        "tests/test_checkpointing.py"],  # enable_grad_checkpointing
              "deselect": [f"tests/test_train.py::test_{name}" for name in (  # whole runs
                  "killed_and_resumed_run_equals_uninterrupted_run",  # of train(): the
                  "early_stopping_counter_survives_an_interruption",  # direct fit tests
                  "training_reduces_the_loss", "fit_plans_micro_batches_from_the_config",
                  "a_run_with_hidden_labels_trains_and_reports")]},  # cover the same lines
    "metrics": {"tests": ["tests/test_metrics.py"]},
    "preprocess": {"tests": ["tests/test_preprocess.py"]},
    "data": {"tests": ["tests/test_data.py"],
             "deselect": [f"tests/test_data.py::test_two_and_three_class_datasets_train_end_to_end"
                          f"[{k}]" for k in (2, 3)]},  # whole training runs: not fast
    "layout": {"tests": ["tests/test_layout.py"]},
    "hardware": {"tests": ["tests/test_hardware.py"]},
    "text": {"tests": ["tests/test_text.py"]},
}
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
SURVIVED = {"survived", "no tests", "suspicious"}


def equivalents() -> dict[str, str]:
    """Mutant name -> the reason it cannot change behaviour, from MUTATION.md."""
    if not NOTE.is_file():
        return {}
    text = NOTE.read_text(encoding="utf-8")
    section = text.split("## Equivalent mutants", 1)[-1] if "## Equivalent mutants" in text \
        else ""
    section = section.split("\n## ", 1)[0]
    return {m[1]: m[2].strip() for m in re.finditer(r"^- `([\w.]+__mutmut_\d+)`:?(.*)$",
                                                      section, re.M)}


def warm(tests: Path) -> None:
    """transformers imports its models lazily: import them in the fork server, once."""
    with open(tests / "conftest.py", "a") as f:
        f.write("\nimport transformers.models.bert.modeling_bert  # noqa: E402,F401\n"
                "import transformers.models.vit.modeling_vit  # noqa: E402,F401\n")


def workdir(base: Path, module: str) -> Path:
    """A copy of emolib/ and tests/ with a mutmut config for ``module`` alone."""
    work = base / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for folder in ("emolib", "tests"):
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    warm(work / "tests")
    write_config(work, module)
    return work


def write_config(work: Path, module: str) -> None:
    """mutmut's configuration for ``module``: what to mutate, which tests to run."""
    spec = CORE[module]
    selection = list(spec["tests"])
    for node in spec.get("deselect", []):
        selection += ["--deselect", node]
    config = {
        "source_paths": ["emolib"],
        "only_mutate": [f"emolib/{module}.py"],
        "pytest_add_cli_args": ["-x", "-q", "-p", "no:cacheprovider",
                                "-W", "ignore::DeprecationWarning"],
        "pytest_add_cli_args_test_selection": selection,
        "process_isolation": "forkserver",  # torch is not fork-safe once it has run
        "use_git_change_detection": False,
    }
    lines = ["[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    lines += ["", "[tool.pytest.ini_options]", 'testpaths = ["tests"]',
              'markers = ["slow: longer integration tests"]']
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")


def results_of(work: Path, module: str) -> dict:
    """Status of every mutant of ``module`` (mutmut's .meta file) and each survivor's diff."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / "emolib" / f"{module}.py.meta").read_text())
    status = {name: status_by_exit_code[code] for name, code in
              meta["exit_code_by_key"].items()}
    survivors = sorted(n for n, s in status.items() if s in SURVIVED)
    diffs = {}
    if survivors:
        code = ("import json, sys; from pathlib import Path\n"
                "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
                f"names = {survivors!r}\n"
                f"print(json.dumps({{n: get_diff_for_mutant(n, path=Path('emolib/{module}.py'))"
                " for n in names}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                             text=True, check=False)
        diffs = json.loads(out.stdout) if out.returncode == 0 else {}
    return {"status": status, "diffs": diffs}


def run_module(base: Path, module: str, children: int, rerun: bool = False) -> dict:
    """mutmut on ``module`` in a fresh copy; with ``rerun``, only the survivors of the last
    run, against the current tests and the current other modules (killed mutants stay
    killed: tests were only added; the mutated module itself must be unchanged)."""
    names: list[str] = []
    if rerun and (base / module / "mutants").is_dir():
        work = base / module
        if (work / "emolib" / f"{module}.py").read_text() != \
                (ROOT / "emolib" / f"{module}.py").read_text():
            raise SystemExit(f"emolib/{module}.py changed since its mutation run: its mutants "
                             "are of the old code; run it again without --rerun-survivors")
        for src in (ROOT / "emolib").rglob("*.py"):  # today's other modules, unmutated
            rel = src.relative_to(ROOT)
            if rel != Path("emolib", f"{module}.py"):
                for dest in (work / rel, work / "mutants" / rel):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)
        known = equivalents()  # explained: nothing to re-test
        names = sorted(n for n, s in results_of(work, module)["status"].items()
                       if s in SURVIVED and n not in known)
        for dest in (work / "tests", work / "mutants" / "tests"):
            shutil.rmtree(dest)
            shutil.copytree(ROOT / "tests", dest,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            warm(dest)
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # new tests: remap
        write_config(work, module)  # today's test selection
        if not names:
            return {**results_of(work, module), "wall_s": 0.0}
    else:
        work = workdir(base, module)
    env = {**os.environ, "EMOLIB_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # the mutated copy must be the emolib the tests import
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                           str(children), *names], cwd=work, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    log = work / "mutmut.log"
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"mutmut failed on {module} (exit {proc.returncode}); see {log}:\n"
                         + (proc.stdout + proc.stderr)[-3000:])
    return {**results_of(work, module), "wall_s": wall}


def summarise(runs: dict[str, dict], wall: float) -> dict:
    known = equivalents()
    out = {"tool": "mutmut", "killed": 0, "survived": 0, "equivalent": 0, "score": None,
           "modules": {}, "wall_s": round(wall, 1), "survivors": []}
    for module, res in runs.items():
        counts = {"killed": 0, "survived": 0, "equivalent": 0}
        timeouts = 0
        for name, status in sorted(res["status"].items()):
            if status in KILLED:
                counts["killed"] += 1
                timeouts += status == "timeout"
            elif name in known:
                counts["equivalent"] += 1
            elif status in SURVIVED:
                counts["survived"] += 1
                out["survivors"].append({"module": module, "mutant": name, "status": status,
                                         "diff": res["diffs"].get(name, "")})
            # "skipped" / "not checked" count nowhere: none are expected
        tested = counts["killed"] + counts["survived"]
        unchecked = sum(1 for st in res["status"].values() if st == "not checked")
        out["modules"][module] = {**counts, "mutants": len(res["status"]),
                                  "of_which_timeouts": timeouts, "not_checked": unchecked,
                                  "score": round(counts["killed"] / tested, 4) if tested
                                  else None, "wall_s": round(res["wall_s"], 1),
                                  "tests": CORE[module]["tests"]}
        for key in counts:
            out[key] += counts[key]
    tested = out["killed"] + out["survived"]
    out["score"] = round(out["killed"] / tested, 4) if tested else None
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", default=list(CORE), help="default: all of CORE")
    p.add_argument("--children", type=int, default=os.cpu_count() or 1,
                   help="mutants tested at once (default: the CPU count)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emolib-mutate",
                   help="folder for the mutated copies")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--rerun-survivors", action="store_true",
                   help="re-test only the last run's survivors (in --work) with today's tests")
    p.add_argument("--report", action="store_true",
                   help="run nothing: rewrite --out from the runs in --work (after editing "
                        "MUTATION.md), keeping the recorded times")
    args = p.parse_args(argv)
    unknown = set(args.modules) - set(CORE)
    if unknown:
        raise SystemExit(f"not in the taught core: {sorted(unknown)}; choose from {list(CORE)}")
    if args.report:
        return report(args)
    t0 = time.perf_counter()
    runs = {}
    for module in args.modules:
        runs[module] = run_module(args.work, module, args.children, args.rerun_survivors)
        s = summarise({module: runs[module]}, runs[module]["wall_s"])["modules"][module]
        print(f"{module:11} {s['mutants']:4} mutants  killed {s['killed']:4}  survived "
              f"{s['survived']:3}  equivalent {s['equivalent']:3}  score {s['score']}  "
              f"{s['wall_s']:.0f} s", flush=True)
    result = summarise(runs, time.perf_counter() - t0)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {"modules": {}}
    if args.rerun_survivors:  # the full run's time stays; the re-run's is added
        for module in runs:
            old = previous["modules"].get(module, {})
            result["modules"][module]["rerun_wall_s"] = round(  # every re-run, added up
                old.get("rerun_wall_s", 0.0) + result["modules"][module]["wall_s"], 1)
            result["modules"][module]["wall_s"] = old.get("wall_s", 0.0)
    if set(args.modules) != set(CORE):  # a partial run: merge
        for module, stats in previous.get("modules", {}).items():
            if module not in runs:
                result["modules"][module] = stats
                result["survivors"] += [s for s in previous["survivors"]
                                        if s["module"] == module]
        for key in ("killed", "survived", "equivalent"):
            result[key] = sum(m[key] for m in result["modules"].values())
        tested = result["killed"] + result["survived"]
        result["score"] = round(result["killed"] / tested, 4) if tested else None
        result["wall_s"] = round(sum(m["wall_s"] for m in result["modules"].values()), 1)
    reruns = [m["rerun_wall_s"] for m in result["modules"].values() if "rerun_wall_s" in m]
    if reruns:
        result["rerun_wall_s"] = round(sum(reruns), 1)
        result["wall_s"] = round(sum(m["wall_s"] for m in result["modules"].values()), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"score {result['score']} (killed {result['killed']}, survived "
          f"{result['survived']}, equivalent {result['equivalent']}) in {result['wall_s']:.0f} s"
          f" -> {args.out}")
    for s in result["survivors"]:
        print(f"survived: {s['mutant']} ({s['status']})")
    return result


def report(args: argparse.Namespace) -> dict:
    """``--out`` recomputed from the mutmut results in ``--work``, times kept from ``--out``."""
    previous = json.loads(args.out.read_text())["modules"]
    runs = {m: {**results_of(args.work / m, m), "wall_s": previous[m]["wall_s"]}
            for m in args.modules}
    result = summarise(runs, 0.0)
    for m in args.modules:
        for key in ("rerun_wall_s", "retested_one_by_one"):
            if key in previous[m]:
                result["modules"][m][key] = previous[m][key]
    result["not_checked"] = sum(m["not_checked"] for m in result["modules"].values())
    result["wall_s"] = round(sum(previous[m]["wall_s"] for m in args.modules), 1)
    reruns = [previous[m].get("rerun_wall_s", 0.0) for m in args.modules]
    if any(reruns):
        result["rerun_wall_s"] = round(sum(reruns), 1)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"score {result['score']} (killed {result['killed']}, survived "
          f"{result['survived']}, equivalent {result['equivalent']}) -> {args.out}")
    return result


if __name__ == "__main__":
    main()
