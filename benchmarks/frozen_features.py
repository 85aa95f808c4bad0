"""Training step with and without precomputed frozen text features, in one run.

The ``cpu`` profile freezes MiniLM's embeddings and first five layers. Without the cache
every step runs all six layers; with it (:mod:`emolib.frozen_features`) the frozen output
of every post is computed once and each step runs only the trained layer. Both models
start from the same weights and see the same batches; rounds alternate between them so
that a noisy machine penalises both alike. Reports ms/step (median over rounds), the
speed-up, the one-off cost of the features, and the loss of both after the timed steps
(they must agree to float rounding).

    python benchmarks/frozen_features.py              # cpu profile, default EmoSynth
    python benchmarks/frozen_features.py --smoke      # seconds: a check that it runs

JSON to ``benchmarks/results/frozen_features_<device>_<date>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import device_name, slug  # noqa: E402

from emolib import frozen_features  # noqa: E402
from emolib.config import get_profile  # noqa: E402
from emolib.model import EmoticonModel  # noqa: E402
from emolib.notebook import ensure_emosynth  # noqa: E402
from emolib.prepare.emosynth import generate  # noqa: E402
from emolib.synth import SynthConfig  # noqa: E402
from emolib.train import DistInfo, make_optimizer, prepare, train_batches, train_step  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny model (smoke profile, 3 layers, last one trained), a few steps")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per variant")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    return p.parse_args(argv)


def take(batches, n: int) -> list:
    """The first ``n`` batches, over as many epochs as that takes."""
    out: list = []
    epoch = 0
    while len(out) < n:
        batches.set_epoch(epoch)
        out += list(batches)
        epoch += 1
    return out[:n]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        prof = get_profile("smoke")
        prof.model.text = dataclasses.replace(prof.model.text, arch=dict(
            prof.model.text.arch, num_hidden_layers=3), train_last_layers=1)
        data = Path(tempfile.mkdtemp(prefix="emolib-bench-")) / "emosynth"
        generate(data, SynthConfig(size=160, image_size=32, seed=0), progress=False)
        steps, rounds = args.steps or 3, args.rounds or 2
    else:
        prof = get_profile("cpu")
        data = ensure_emosynth("cpu", ROOT)
        steps, rounds = args.steps or 20, args.rounds or 3
    model_cfg, cfg, _, _, cache = prepare(prof, data, progress=False)
    torch.manual_seed(0)
    base = EmoticonModel(model_cfg).to(device)
    t0 = time.perf_counter()
    fast_cache = frozen_features.with_text_features(base.text_encoder, cache)
    feature_seconds = time.perf_counter() - t0
    if fast_cache.text_features is None:
        raise SystemExit("this profile's text encoder has no frozen layers")

    variants = {}
    for name, c in (("all_layers", cache), ("cached_features", fast_cache)):
        model = EmoticonModel(model_cfg).to(device)
        model.load_state_dict(base.state_dict())
        model.train()
        opt, sched = make_optimizer(model, cfg, device, 10_000)
        batches = take(train_batches(c, cfg, DistInfo(device=device)), steps * rounds + 2)
        variants[name] = {"model": model, "opt": opt, "sched": sched, "batches": batches,
                          "ms": [], "losses": []}
    for v in variants.values():  # warm-up: 2 untimed steps each
        for b in v["batches"][:2]:
            train_step(v["model"], b, v["opt"], v["sched"], cfg)
    for r in range(rounds):
        for v in variants.values():
            torch.manual_seed(1000 + r)  # same dropout draws in both
            chunk = v["batches"][2 + r * steps: 2 + (r + 1) * steps]
            t = time.perf_counter()
            for b in chunk:
                v["losses"].append(float(train_step(v["model"], b, v["opt"], v["sched"],
                                                     cfg)[0]))
            v["ms"].append((time.perf_counter() - t) / len(chunk) * 1000)
    ms = {name: statistics.median(v["ms"]) for name, v in variants.items()}
    losses = {name: v["losses"][-1] for name, v in variants.items()}
    result = {
        "benchmark": "frozen_features", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device_kind": device.type, "device_name": device_name(device),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "profile": prof.name,
        "text_layers": int(getattr(base.text_encoder.backbone.config, "num_hidden_layers", 0)),
        "frozen_layers": base.text_encoder.frozen_layers, "batch_size": cfg.batch_size,
        "posts": len(cache), "steps_per_round": steps, "rounds": rounds,
        "ms_per_step": {k: round(v, 1) for k, v in ms.items()},
        "ms_per_step_rounds": {k: [round(x, 1) for x in v["ms"]] for k, v in variants.items()},
        "speedup": round(ms["all_layers"] / ms["cached_features"], 3),
        "feature_seconds": round(feature_seconds, 1),
        "feature_megabytes": round(fast_cache.text_features.numel() * 4 / 2**20),
        "last_loss": losses,
        "loss_rel_diff": abs(losses["all_layers"] - losses["cached_features"])
        / abs(losses["all_layers"]),
    }
    frozen_features.clear()
    args.out.mkdir(parents=True, exist_ok=True)
    name = (f"frozen_features_{slug(result['device_name'])}_{dt.date.today().isoformat()}"
            f"{'_smoke' if args.smoke else ''}")
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{prof.name}: {ms['all_layers']:.0f} ms/step with all text layers, "
          f"{ms['cached_features']:.0f} ms/step with cached frozen features "
          f"(x{result['speedup']:.2f}); features: {feature_seconds:.1f} s once, "
          f"{result['feature_megabytes']} MB; last loss {losses['all_layers']:.5f} vs "
          f"{losses['cached_features']:.5f}\n-> {path}")
    return result


if __name__ == "__main__":
    main()
