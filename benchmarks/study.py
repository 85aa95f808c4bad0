"""The reproduction study: a grid of ordinary training runs, one tidy CSV.

    python benchmarks/study.py                    # the whole grid (hours on a 2-core CPU)
    python benchmarks/study.py --only robustness  # one experiment
    python benchmarks/study.py --list             # the grid, one line per run
    python benchmarks/study.py --quick --csv /tmp/q.csv --root /tmp/q   # seconds
    python benchmarks/study.py --seeds 0 1 --set augment=true --where "size == 2000" \
        --csv trial.csv                           # a recipe trial: other seeds, overrides

Every run is ``emolib.run.train`` with the ``cpu`` profile (``smoke`` for ``--quick``) and
a few overrides; the grid is the table :data:`GRID` below. Datasets are EmoSynth, built
once per setting under ``<root>/data/study/``; runs go to ``<root>/runs/study/`` (both
git-ignored). Resumable: a run with its row in the CSV, or with ``test_metrics.json`` in
its folder, is not run again; an interrupted run resumes from its last checkpoint. A run's
folder is named after its settings and a hash of its full configuration (profile and
overrides), so a changed recipe never reuses an old run. The CSV holds one row per grid
cell whose run has finished, in the grid's order; the same run may serve two experiments
(label efficiency at 100% labels is the ablation's full model and λ = 0).

Ceilings: ``bayes_joint`` / ``bayes_single`` are the analytic Bayes accuracies of
:func:`emolib.synth.ceilings`; ``bayes_joint_test`` / ``bayes_text_test`` /
``bayes_image_test`` are the Bayes classifier's accuracy measured on the same test posts
(:func:`emolib.synth.bayes_reference`); ``ceiling_test`` is the one that applies to the
run's inputs (joint for text + image, the single-modality one otherwise) and
``gap_test = ceiling_test - test_accuracy``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

CSV = ROOT / "benchmarks" / "results" / "study.csv"

#: variant -> what it changes in ``train()`` (the profile's recipe is everything else)
VARIANTS: dict[str, dict] = {
    "full": {},                                    # attention fusion, λ = 0.5 (the paper)
    "concat": {"fusion": "concat"},
    "lambda0": {"contrastive_weight": 0.0},
    "text_only": {"mode": "text"},
    "image_only": {"mode": "image"},
}
SEEDS = (0, 1, 2)
DEFAULT = dict(classes=(8,), noise=(0.05,), size=(6000,), data_seed=(0,))

#: The grid: each line expands to the product of its tuples, one run per combination.
GRID = [
    dict(experiment="ablation", variant=("full", "concat", "lambda0", "text_only",
                                         "image_only"),
         seed=SEEDS, label_fraction=(1.0,), **DEFAULT),
    dict(experiment="label_efficiency", variant=("lambda0", "full"), seed=SEEDS,
         label_fraction=(0.05, 0.2, 1.0), **DEFAULT),
    dict(experiment="robustness", variant=("full", "image_only"), seed=(0,),
         label_fraction=(1.0,), classes=(4, 8, 16), noise=(0.0, 0.1), size=(2000, 6000),
         data_seed=(0,)),
    # a second seed where one run on 200 test posts is too coarse to judge the goal
    dict(experiment="robustness", variant=("full",), seed=(1,), label_fraction=(1.0,),
         classes=(4, 8, 16), noise=(0.0, 0.1), size=(2000,), data_seed=(0,)),
]
#: Training options added after the study's runs, left out of a run's configuration (so
#: of its folder name and recipe) while at their default: adding one renames no run.
OPT_IN = ("augment", "gce_q")
#: ``--quick``: the smoke profile on tiny sets (seconds), for the tests.
QUICK_GRID = [
    dict(experiment="ablation", variant=("full", "text_only"), seed=(0,),
         label_fraction=(1.0,), classes=(4,), noise=(0.0,), size=(120,), data_seed=(0,)),
    dict(experiment="label_efficiency", variant=("full",), seed=(0,),
         label_fraction=(0.2,), classes=(4,), noise=(0.0,), size=(120,), data_seed=(0,)),
]
KEY = ("experiment", "variant", "seed", "label_fraction", "classes", "noise", "size",
       "data_seed")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    experiment: str
    variant: str
    seed: int
    label_fraction: float
    classes: int
    noise: float
    size: int
    data_seed: int
    profile: str = "cpu"
    image_size: int = 64
    overrides: dict = field(default_factory=dict, hash=False, compare=False)

    def train_args(self) -> dict:
        """``emolib.run.train`` keyword arguments beyond data and folder."""
        return {**VARIANTS[self.variant], **self.overrides, "seed": self.seed,
                "label_fraction": self.label_fraction}

    @property
    def data_name(self) -> str:
        return (f"emosynth-k{self.classes}-e{self.noise:g}-n{self.size}-s{self.data_seed}"
                f"-{self.image_size}px")

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY)


def expand(grid: list[dict], profile: str = "cpu", image_size: int = 64,
           overrides: dict | None = None, seeds: tuple[int, ...] | None = None
           ) -> list[Cell]:
    """The grid's runs, each once; ``seeds`` replaces every line's training seeds."""
    cells: dict[tuple, Cell] = {}
    for line in grid:
        line = {**line, "seed": tuple(seeds)} if seeds else line
        names = [k for k in KEY if k != "experiment"]
        for values in itertools.product(*(line[k] for k in names)):
            cell = Cell(line["experiment"], **dict(zip(names, values, strict=True)),
                        profile=profile, image_size=image_size,
                        overrides=dict(overrides or {}))
            cells.setdefault(cell.key(), cell)
    return list(cells.values())


def effective_config(cell: Cell) -> dict:
    """The run's model and training configuration, as ``emolib.run.experiment`` builds
    it (without the dataset's class count and the machine-specific paths and threads)."""
    from emolib.config import get_profile

    prof = get_profile(cell.profile)
    args = cell.train_args()
    model = dataclasses.replace(prof.model, mode=args.pop("mode", None) or prof.model.mode,
                                fusion=args.pop("fusion", None) or prof.model.fusion)
    train = dataclasses.replace(prof.train, **args)
    model_d, train_d = dataclasses.asdict(model), dataclasses.asdict(train)
    model_d["text"]["name"] = model_d["text"]["name"] and Path(model_d["text"]["name"]).name
    train_d.pop("num_threads")
    off = dataclasses.asdict(type(train)())
    for name in OPT_IN:  # at its default: as before the option existed
        if train_d[name] == off[name]:
            train_d.pop(name)
    return {"profile": cell.profile, "model": model_d, "train": train_d}


def recipe_hash(cell: Cell) -> str:
    """8 hex digits of the run's configuration without its seed, label fraction, mode,
    fusion and weight (the grid's own columns): the same for every run of one recipe."""
    cfg = effective_config(cell)
    for k in ("seed", "label_fraction", "contrastive_weight"):
        cfg["train"].pop(k)
    cfg["model"].pop("mode"), cfg["model"].pop("fusion")
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]


def run_name(cell: Cell) -> str:
    cfg = effective_config(cell)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
    m, t = cfg["model"], cfg["train"]
    return (f"{m['mode']}-{m['fusion']}-w{t['contrastive_weight']:g}"
            f"-f{t['label_fraction']:g}-s{t['seed']}-{digest}")


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"cpu: {cpu}, {threads} thread{'s' if threads != 1 else ''}"


def ensure_data(cell: Cell, data_root: Path) -> Path:
    from emolib.layout import is_complete
    from emolib.prepare.emosynth import generate
    from emolib.synth import SynthConfig

    out = data_root / cell.data_name
    if not is_complete(out):
        generate(out, SynthConfig(size=cell.size, classes=cell.classes, noise=cell.noise,
                                  image_size=cell.image_size, seed=cell.data_seed),
                 progress=False, workers=min(2, os.cpu_count() or 1))
    return out


_BAYES: dict[Path, dict] = {}


def ceilings_of(cell: Cell, data_dir: Path) -> dict:
    from emolib.synth import bayes_reference, ceilings

    if data_dir not in _BAYES:
        _BAYES[data_dir] = bayes_reference(data_dir, "test")
    measured = _BAYES[data_dir]
    analytic = ceilings(cell.classes, cell.noise)
    mode = effective_config(cell)["model"]["mode"]
    single = {"text": measured["text"]["accuracy"], "image": measured["image"]["accuracy"]}
    ceiling = analytic["joint"] if mode == "both" else analytic[mode]
    ceiling_test = measured["joint"]["accuracy"] if mode == "both" else single[mode]
    return {"bayes_joint": analytic["joint"], "bayes_single": analytic["text"],
            "bayes_joint_test": measured["joint"]["accuracy"],
            "bayes_text_test": single["text"], "bayes_image_test": single["image"],
            "ceiling": ceiling, "ceiling_test": ceiling_test}


_TEST_SPLIT: dict[tuple[str, Path], tuple] = {}


def scored_posts(profile: str, data_dir: Path) -> tuple:
    """(tensor cache, test indices, true class of each test post), once per dataset and
    profile: every run of one setting is scored on the same posts."""
    from emolib.run import experiment

    if (profile, data_dir) not in _TEST_SPLIT:
        cache = experiment(profile, data_dir, progress=False).cache
        test = cache.indices("test")
        lat = pd.read_csv(data_dir / "latents.csv").set_index("id")
        _TEST_SPLIT[profile, data_dir] = (cache, test,
                                          lat.loc[cache.ids[test], "true_class"].to_numpy())
    return _TEST_SPLIT[profile, data_dir]


def cue_accuracy(cell: Cell, run_dir: Path, data_dir: Path) -> dict:
    """Where the best model's test errors come from, against each post's *true* class
    (``latents.csv``; the observed label may be noise): ``clean_accuracy`` is the share of
    test posts predicted as their true class (the Bayes classifier with both cues scores 1);
    ``text_pair_accuracy`` / ``image_pair_accuracy`` the share whose prediction lies in the
    true class's text pair / image pair, the half of the class that modality says."""
    from emolib.data import BatchIterator
    from emolib.model import predict
    from emolib.run import load_run
    from emolib.synth import image_group, text_group

    cache, test, true = scored_posts(cell.profile, data_dir)
    logits = predict(load_run(run_dir).model, BatchIterator(cache, test, 256))["logits"]
    pred = logits.argmax(1)
    k = cell.classes
    return {"clean_accuracy": float(np.mean(pred == true)),
            "text_pair_accuracy": float(np.mean(text_group(pred, k) == text_group(true, k))),
            "image_pair_accuracy": float(np.mean(image_group(pred, k) == image_group(true, k)))}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """As ``emolib.train.fit`` batches (one process): the last short batch is dropped
    when the split holds at least two batches."""
    return n_train // batch_size if n_train >= 2 * batch_size else math.ceil(
        n_train / batch_size)


def row_of(cell: Cell, run_dir: Path, data_dir: Path) -> dict:
    """The CSV row of a finished run, from its folder."""
    test = json.loads((run_dir / "test_metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    study = json.loads((run_dir / "study.json").read_text()) \
        if (run_dir / "study.json").is_file() else {}
    history = pd.read_csv(run_dir / "metrics.csv")
    best = int(history.loc[history["val_mcc"].idxmax(), "epoch"])
    train_cfg = run["train"]
    n_train = int(study.get("n_train", 0)) or None
    per_epoch = steps_per_epoch(n_train, train_cfg["batch_size"]) if n_train else None
    ceil = ceilings_of(cell, data_dir)
    return {
        **{k: getattr(cell, k) for k in KEY},
        "profile": cell.profile, "mode": run["model"]["mode"], "fusion": run["model"]["fusion"],
        "contrastive_weight": train_cfg["contrastive_weight"],
        "epochs": int(study.get("planned_epochs") or train_cfg["epochs"]),
        "epochs_run": len(history), "best_epoch": best,
        "steps_per_epoch": per_epoch, "steps": per_epoch and per_epoch * len(history),
        "test_n": test["n"], "test_accuracy": test["accuracy"], "test_mcc": test["mcc"],
        "test_macro_f1": test["macro_f1"],
        **ceil, "gap_test": ceil["ceiling_test"] - test["accuracy"],
        **cue_accuracy(cell, run_dir, data_dir),
        "final_train_contrastive": float(history["train_contrastive"].iloc[-1]),
        "wall_s": study.get("wall_s"), "resumed": study.get("resumed"),
        "device": study.get("device", run.get("device")), "torch": study.get("torch"),
        "recipe": recipe_hash(cell), "run": str(run_dir.relative_to(run_dir.parents[3])),
    }


def run_cell(cell: Cell, run_dir: Path, data_dir: Path, threads: int | None) -> None:
    """Train (or resume) one run and record its wall time next to its metrics."""
    from emolib.run import train

    resumed = (run_dir / "checkpoint.pt").is_file()
    t0 = time.perf_counter()
    args = cell.train_args()
    result = train(cell.profile, data_dir, run_dir, resume=True, progress=False,
                   num_threads=threads, **args)
    wall = time.perf_counter() - t0
    n_train = len(result.experiment.cache.indices("train"))
    planned = getattr(result.fit, "epochs", None) or result.experiment.train.epochs
    (run_dir / "study.json").write_text(json.dumps({
        "wall_s": round(wall, 1), "resumed": resumed, "device": device_name(),
        "torch": torch.__version__, "n_train": n_train, "planned_epochs": planned,
        "finished": datetime.datetime.now().isoformat(timespec="seconds")}, indent=1))


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def write_csv(rows: dict[tuple, dict], cells: list[Cell], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame([rows[c.key()] for c in cells if c.key() in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)
    return frame


def study(cells: list[Cell], csv: Path, root: Path, only: set[str] | None = None,
          threads: int | None = 2, progress: bool = True, selected: set | None = None,
          refresh: bool = False) -> pd.DataFrame:
    """Run every cell not yet done (of the experiments in ``only`` and the keys in
    ``selected``, where given); rewrite ``csv`` after each run. ``refresh``: rows already
    in the CSV are read again from their run folders (new columns; nothing is retrained).
    Returns the CSV."""
    if threads:
        torch.set_num_threads(threads)
    data_root, runs_root = root / "data" / "study", root / "runs" / "study"
    old = read_csv(csv)
    rows: dict[tuple, dict] = {}
    for rec in old.to_dict("records"):
        key = tuple(rec[k] for k in KEY)
        rows[key] = rec
    todo = [c for c in cells if (only is None or c.experiment in only)
            and (selected is None or c.key() in selected)]
    stale = {k for k, r in rows.items()} - {c.key() for c in cells}
    for cell in cells:  # a row of another recipe is not this grid's
        if cell.key() in rows and rows[cell.key()].get("recipe") != recipe_hash(cell):
            stale.add(cell.key())
    for key in stale:
        rows.pop(key)
    if stale and progress:
        tqdm.write(f"{len(stale)} row(s) of {csv.name} not in this grid/recipe: dropped")
    bar = tqdm(todo, desc="study", unit="run", disable=not progress, dynamic_ncols=True)
    for cell in bar:
        bar.set_postfix_str(f"{cell.experiment} {cell.variant} s{cell.seed} "
                            f"f{cell.label_fraction:g} {cell.data_name}")
        if cell.key() in rows and not refresh:
            continue
        data_dir = ensure_data(cell, data_root)
        run_dir = runs_root / cell.data_name / run_name(cell)
        if not (run_dir / "test_metrics.json").is_file():
            run_cell(cell, run_dir, data_dir, threads)
        rows[cell.key()] = row_of(cell, run_dir, data_dir)
        write_csv(rows, cells, csv)
    return write_csv(rows, cells, csv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke profile, tiny sets (seconds)")
    ap.add_argument("--only", nargs="+", metavar="EXPERIMENT", help="run these experiments")
    ap.add_argument("--csv", type=Path, default=None, help=f"default: {CSV}")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="where data/study/ and runs/study/ go (default: the repository)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--where", metavar="QUERY",
                    help="only the runs this pandas query selects, e.g. 'size == 2000'")
    ap.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig overrides for every run (JSON values), e.g. "
                    "min_epoch_steps=0; they change the runs' folders and recipe")
    ap.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                    help="these training seeds for every experiment (default: the grid's)")
    ap.add_argument("--list", action="store_true", help="print the grid and exit")
    ap.add_argument("--refresh", action="store_true",
                    help="rewrite the selected rows from their finished run folders")
    args = ap.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.quick:
        cells = expand(QUICK_GRID, profile="smoke", image_size=32, overrides=overrides,
                       seeds=args.seeds)
    else:
        cells = expand(GRID, overrides=overrides, seeds=args.seeds)
    selected = None
    if args.where:
        table = pd.DataFrame([{k: getattr(c, k) for k in KEY} for c in cells])
        selected = {cells[i].key() for i in table.query(args.where).index}
    if args.list:
        frame = pd.DataFrame([{**{k: getattr(c, k) for k in KEY},
                               "run": f"{c.data_name}/{run_name(c)}"} for c in cells
                              if selected is None or c.key() in selected])
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(frame.to_string(index=False))
        return 0
    csv = args.csv or (CSV if not args.quick else args.root / "study_quick.csv")
    known = {c.experiment for c in cells}
    if args.only and set(args.only) - known:
        ap.error(f"unknown experiment(s) {sorted(set(args.only) - known)}; "
                 f"choose from {sorted(known)}")
    t0 = time.perf_counter()
    frame = study(cells, csv, args.root, set(args.only) if args.only else None, args.threads,
                  selected=selected, refresh=args.refresh)
    print(f"{len(frame)}/{len(cells)} runs in {csv} ({time.perf_counter() - t0:.0f} s "
          "in this call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
