"""EmoSynth's writer: the posts of the generative model in :mod:`emolib.synth`, drawn into
the canonical layout, with ``latents.csv`` (the hidden variables) and ``emosynth.json``."""

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from emolib import synth
from emolib.prepare.staging import build
from emolib.synth import SynthConfig


def _make_post(job: tuple[int, int, int, int, int, Path]) -> str:
    """Draw post ``i`` into ``path`` (its own RNG: any order or worker gives the same files)."""
    seed, i, tg, ig, size, path = job
    rng = np.random.default_rng([seed, 2, i])
    text = synth.make_text(tg, rng)
    options = {"optimize": False} if path.suffix == ".png" else {"quality": 92}
    synth.make_image(ig, size, rng).save(path, **options)
    return text


def generate(out_dir: str | Path, cfg: SynthConfig = SynthConfig(), progress: bool = True,
             workers: int = 1) -> Path:
    """Write EmoSynth into ``out_dir``, replacing what is there; ``workers`` processes draw
    the posts, and the files are the same for any number of them."""
    cfg.check()
    latents, labels = synth.sample_latents(cfg), synth.labels_for(cfg.classes)
    images = latents["id"] + (".png" if cfg.image_size <= 64 else ".jpg")

    def write(tmp: Path):
        groups = zip(latents["text_group"], latents["image_group"], images, strict=True)
        jobs = [(cfg.seed, i, int(tg), int(ig), cfg.image_size, tmp / "images" / name)
                for i, (tg, ig, name) in enumerate(groups)]
        bar = dict(total=len(jobs), desc="EmoSynth", disable=not progress)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                texts = list(tqdm(pool.map(_make_post, jobs, chunksize=64), **bar))
        else:
            texts = [_make_post(job) for job in tqdm(jobs, **bar)]
        latents.to_csv(tmp / "latents.csv", index=False)
        info = {"name": "EmoSynth", "config": asdict(cfg), "ceilings": synth.ceilings(
            cfg.classes, cfg.noise), "shapes": synth.SHAPES[:cfg.classes // 2],
            "text_cues": synth.TEXT_CUES[:cfg.classes // 2]}
        (tmp / "emosynth.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        meta = pd.DataFrame({"id": latents["id"], "text": texts, "image": images,
                             "label": [labels[y].emoji for y in latents["y"]],
                             "split": latents["split"]})
        return meta, labels, {"source": "synthetic", "config": asdict(cfg)}

    build(out_dir, write)
    return Path(out_dir)
