"""Using a trained run: load it offline and predict the emoticon of a post."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer

from emolib.data import image_transform
from emolib.images import load_rgb
from emolib.model import EmoticonModel
from emolib.text import normalize_tweet


@dataclass
class Run:
    model: EmoticonModel
    tokenizer: object
    labels: list[dict]

    @torch.no_grad()
    def predict(self, text: str, image: str | Path, top_k: int = 3
                ) -> list[tuple[str, str, float]]:
        """Top-k (emoji, name, probability) for one post."""
        cfg = self.model.cfg
        tokens = self.tokenizer([normalize_tweet(text)], truncation=True,
                                max_length=cfg.max_length, return_tensors="pt")
        pixels = image_transform(cfg.image_size)(load_rgb(image)).unsqueeze(0)
        self.model.eval()
        out = self.model(pixel_values=pixels, input_ids=tokens["input_ids"],
                         attention_mask=tokens["attention_mask"])
        probs = out.logits.softmax(-1)[0]
        top = probs.topk(min(top_k, len(probs)))
        return [(self.labels[i]["emoji"], self.labels[i]["name"], float(p))
                for p, i in zip(top.values, top.indices.tolist(), strict=True)]


def load_run(run_dir: str | Path) -> Run:
    """The best model of a run folder written by :func:`emolib.train.train`."""
    run_dir = Path(run_dir)
    best = run_dir / "best"
    if not (best / "model.safetensors").is_file():
        raise FileNotFoundError(f"{best}/model.safetensors not found: is {run_dir} a finished "
                                "run folder of `python -m emolib train`?")
    model = EmoticonModel.load(best)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    labels = json.loads((best / "config.json").read_text(encoding="utf-8"))["labels"]
    return Run(model, tokenizer, labels)
