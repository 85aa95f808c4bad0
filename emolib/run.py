"""A run, end to end, and using its result.

:func:`train` is what ``python -m emolib train`` does: configs from a profile, the checked
dataset and its tensor cache, a seeded model, :func:`emolib.train.fit`, then the best
checkpoint's test metrics. A run folder holds ``run.json``, ``tokenizer/``,
``checkpoint.pt``, ``best/``, ``metrics.csv|json`` and ``test_metrics.json``.
:func:`load_run` reads one back offline; ``Run.predict`` uses the same
:class:`~emolib.preprocess.Preprocessor` as training.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

from emolib.config import ModelConfig, Profile, TrainConfig, get_profile
from emolib.data import DatasetInfo, TensorCache, build_cache, load_dataset
from emolib.distributed import main_first, setup_distributed
from emolib.encoders import load_tokenizer
from emolib.layout import SPLITS, DataError, write_atomic
from emolib.model import EmoticonModel
from emolib.preprocess import Preprocessor
from emolib.train import FitResult, evaluate, fit, set_seed


@dataclass
class Experiment:
    """Everything a training run starts from."""

    model: ModelConfig
    train: TrainConfig
    data: DatasetInfo
    pre: Preprocessor
    cache: TensorCache


def experiment(profile: str | Profile | None, data_dir: str | Path, *, mode: str | None = None,
               fusion: str | None = None, progress: bool = True, **train_overrides
               ) -> Experiment:
    """Configs (profile + overrides), the checked dataset, its preprocessing and cache."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    model_cfg = dataclasses.replace(prof.model, mode=mode or prof.model.mode,
                                    fusion=fusion or prof.model.fusion)
    unknown = set(train_overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown training option(s): {sorted(unknown)}")
    train_cfg = dataclasses.replace(prof.train, **{k: v for k, v in train_overrides.items()
                                                   if v is not None})
    train_cfg.check()
    info = load_dataset(data_dir)
    model_cfg.num_classes = info.num_classes
    model_cfg.check()
    pre = Preprocessor.for_labels(load_tokenizer(model_cfg), model_cfg.image_size,
                                  model_cfg.max_length, [lab.emoji for lab in info.labels])
    cache = build_cache(info, pre, progress=progress)
    for split in SPLITS:
        if not len(cache.indices(split)):
            raise DataError(f"{info.root}: the {split!r} split has no usable posts (rows: "
                            f"{int((info.frame['split'] == split).sum())}, skipped: "
                            f"{cache.skipped or info.skipped}); every run needs train, val "
                            "and test rows")
    return Experiment(model_cfg, train_cfg, info, pre, cache)


@dataclass
class TrainResult:
    out_dir: Path
    model: EmoticonModel
    history: pd.DataFrame
    test_metrics: dict
    experiment: Experiment
    fit: FitResult


def train(profile: str | Profile | None, data_dir: str | Path, out_dir: str | Path, *,
          mode: str | None = None, fusion: str | None = None, resume: bool = True,
          progress: bool = True, **train_overrides) -> TrainResult:
    """Train one model end to end and evaluate its best checkpoint on the test split.

    ``train_overrides`` are :class:`~emolib.config.TrainConfig` fields (epochs, batch_size,
    lr, contrastive_weight, seed, precision, micro_batch, label_fraction, ...).
    """
    info_d = setup_distributed()
    with main_first(info_d):  # rank 0 builds the image cache; the others then read it
        exp = experiment(profile, data_dir, mode=mode, fusion=fusion,
                         progress=progress and info_d.is_main, **train_overrides)
    set_seed(exp.train.seed)
    model = EmoticonModel(exp.model)
    out = Path(out_dir)
    extra = {"labels": [dataclasses.asdict(lab) for lab in exp.data.labels],
             "train": dataclasses.asdict(exp.train)}
    if info_d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".tokenizer.tmp"  # written beside, then renamed: never half a folder
        shutil.rmtree(tmp, ignore_errors=True)
        exp.pre.tokenizer.save_pretrained(tmp)
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        tmp.rename(out / "tokenizer")
        write_atomic(out / "run.json", json.dumps({
            "data": str(data_dir), "profile": getattr(profile, "name", profile),
            "skipped": {**exp.data.skipped, **exp.cache.skipped},
            "label_emoji_rows": exp.data.label_emoji_rows, **extra,
            "model": dataclasses.asdict(exp.model)}, indent=1, ensure_ascii=False))
    result = fit(model, exp.cache, exp.train, out, dist=info_d, resume=resume,
                 progress=progress, extra_config=extra)
    if (out / "best").is_dir():  # fit ends with a barrier: rank 0 has written it
        model = EmoticonModel.load(out / "best", device=info_d.device)
    test = evaluate(model, exp.cache, "test", exp.train.eval_batch_size, result.precision)
    if info_d.is_main:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        run.update(precision=result.precision, micro_batch=result.micro_batch,
                   device=str(info_d.device), world_size=info_d.world_size)
        write_atomic(out / "run.json", json.dumps(run, indent=1, ensure_ascii=False))
        write_atomic(out / "test_metrics.json", json.dumps(test, indent=1))
    return TrainResult(out, model, result.history, test, exp, result)


@dataclass
class Run:
    """A finished run: its best model, its preprocessing and its classes."""

    model: EmoticonModel
    pre: Preprocessor
    labels: list[dict]

    @torch.no_grad()
    def predict(self, text: str, image: str | Path | bytes, top_k: int = 3
                ) -> list[tuple[str, str, float]]:
        """Top-k (emoji, name, probability) for one post."""
        self.model.eval()
        batch = self.pre([text], [image])
        device = next(self.model.parameters()).device
        logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits
        probs = logits.float().softmax(-1)[0]
        top = probs.topk(min(top_k, len(probs)))
        return [(self.labels[i]["emoji"], self.labels[i]["name"], float(p))
                for p, i in zip(top.values, top.indices.tolist(), strict=True)]


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """The best model of a run folder written by :func:`train` (no network needed)."""
    run_dir = Path(run_dir)
    best = run_dir / "best"
    if not (best / "model.safetensors").is_file():
        raise FileNotFoundError(f"{best}/model.safetensors not found: is {run_dir} a finished "
                                "run folder of `python -m emolib train`?")
    model = EmoticonModel.load(best, device)
    labels = json.loads((best / "config.json").read_text(encoding="utf-8"))["labels"]
    pre = Preprocessor.for_labels(AutoTokenizer.from_pretrained(run_dir / "tokenizer"),
                                  model.cfg.image_size, model.cfg.max_length,
                                  [lab["emoji"] for lab in labels])
    return Run(model, pre, labels)
