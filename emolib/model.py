"""The full model: two encoders, projections into one space, fusion, classifier.

    text  -> TextEncoder  -> Linear -> L2-norm -> t ┐
                                                    ├─ InfoNCE(t, v)   (emolib.losses)
    image -> ImageEncoder -> Linear -> L2-norm -> v ┘
    [t, v, t*v] -> fusion (attention or concat) -> classifier -> emoticon logits

The forward returns the logits, both embeddings and the logit scale s; the loss
(CE + lambda * InfoNCE) is computed outside, by :func:`emolib.losses.compute_loss`, so
evaluation is a plain forward and a batch can be split into micro-batches.
``mode="text"``/``"image"`` drops the other branch (ablations). Saved as ``config.json``
+ ``model.safetensors``, never pickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn
from tqdm import tqdm

from emolib.config import ModelConfig, model_config_from_dict
from emolib.data import TensorCache
from emolib.encoders import ImageEncoder, TextEncoder
from emolib.fusion import AttentionFusion, ConcatFusion, modality_tokens
from emolib.hardware import autocast
from emolib.layout import write_atomic


@dataclass
class ModelOutput:
    logits: torch.Tensor
    text_embed: torch.Tensor | None = None      # (B, D), L2-normalised
    image_embed: torch.Tensor | None = None     # (B, D), L2-normalised
    fusion_weights: torch.Tensor | None = None  # (B, heads, tokens) for attention fusion
    logit_scale: torch.Tensor | None = None     # s = exp(learnt log-scale), both branches


class EmoticonModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.embed_dim
        self.text_encoder = self.image_encoder = None
        self.text_proj = self.image_proj = self.logit_scale = None
        if cfg.mode in ("both", "text"):
            self.text_encoder = TextEncoder(cfg.text)
            self.text_proj = nn.Linear(self.text_encoder.hidden_size, d)
        if cfg.mode in ("both", "image"):
            self.image_encoder = ImageEncoder(cfg.image)
            self.image_proj = nn.Linear(self.image_encoder.hidden_size, d)
        if cfg.mode == "both":  # ln s; clamped to [0, ln 100] after each optimizer step
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        tokens = 3 if cfg.mode == "both" else 1
        if cfg.fusion == "attention":
            self.fusion = AttentionFusion(d, tokens, cfg.fusion_heads, cfg.dropout)
        else:
            self.fusion = ConcatFusion(d, tokens, cfg.dropout)
        self.classifier = nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.dropout),
                                        nn.Linear(d, cfg.num_classes))

    @property
    def temperature(self) -> float | None:
        return None if self.logit_scale is None else math.exp(-self.logit_scale.item())

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    features: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: the frozen text encoder's output, computed once (:func:`text_features`)."""
        if self.text_encoder is None:
            raise RuntimeError("this model has no text branch (mode='image')")
        if features is None:
            features = self.text_encoder(input_ids, attention_mask)
        return F.normalize(self.text_proj(features), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.image_encoder is None:
            raise RuntimeError("this model has no image branch (mode='text')")
        return F.normalize(self.image_proj(self.image_encoder(pixel_values)), dim=-1)

    def forward(self, pixel_values: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                text_features: torch.Tensor | None = None, **_: object) -> ModelOutput:
        t = self.encode_text(input_ids, attention_mask, text_features) \
            if self.text_encoder else None
        v = self.encode_image(pixel_values) if self.image_encoder else None
        fused, weights = self.fusion(modality_tokens(t, v))
        scale = self.logit_scale.exp() if self.logit_scale is not None else None
        return ModelOutput(self.classifier(fused), t, v, weights, scale)

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write model.safetensors and config.json (with each backbone's HF config)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model": dataclasses.asdict(self.cfg), "backbones": {}}
        for name, enc in (("text", self.text_encoder), ("image", self.image_encoder)):
            if enc is not None:
                config["backbones"][name] = {"source": enc.source,
                                             "config": enc.backbone.config.to_dict()}
        config.update(extra or {})
        tmp = folder / "model.safetensors.tmp"
        save_safetensors(self, str(tmp))
        tmp.replace(folder / "model.safetensors")
        write_atomic(folder / "config.json", json.dumps(config, indent=1, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> EmoticonModel:
        """Rebuild from config.json (no network: backbones come from their saved configs)."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        cfg = model_config_from_dict(config["model"])
        for name in ("text", "image"):
            saved = config["backbones"].get(name)
            if saved:
                enc = getattr(cfg, name)
                enc.name, enc.pretrained, enc.arch = None, False, dict(saved["config"])
        model = cls(cfg)
        load_safetensors(model, str(folder / "model.safetensors"), device=str(device))
        return model.to(device)


@torch.no_grad()
def text_features(model: EmoticonModel, cache: TensorCache, batch_size: int = 256,
                  progress: bool = False) -> TensorCache:
    """``cache`` with a frozen text encoder's output for every post, computed once.

    A frozen encoder (``EncoderConfig.freeze``, in eval mode: no dropout) is a fixed
    function of the post, so computing it in every step of every epoch repeats the same
    work; the batches then carry ``text_features`` and the model skips the encoder.
    Returns ``cache`` unchanged when the text encoder trains (or there is none).
    """
    enc = model.text_encoder
    if enc is None or not enc.cfg.freeze:
        return cache
    device = next(model.parameters()).device
    chunks = []
    for start in tqdm(range(0, len(cache), batch_size), desc="frozen text encoder",
                      disable=not progress):
        mask = cache.attention_mask[start:start + batch_size]
        width = max(int(mask.sum(1).max()), 1)
        ids = cache.input_ids[start:start + batch_size, :width].long().to(device)
        chunks.append(enc(ids, mask[:, :width].long().to(device)).float().cpu())
    return dataclasses.replace(cache, text_features=torch.cat(chunks))


@torch.no_grad()
def predict(model: nn.Module, batches, precision: str = "fp32", progress: bool = False,
            desc: str = "predict") -> dict[str, np.ndarray]:
    """Run ``model`` over batches: logits, labels, embeddings and fusion weights (numpy)."""
    was_training = model.training
    model.eval()
    keys = ("logits", "text_embed", "image_embed", "fusion_weights")
    out: dict[str, list] = {k: [] for k in (*keys, "labels")}
    device = next(model.parameters()).device
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        with autocast(device, precision):
            res = model(**batch)
        out["labels"].append(batch["labels"].cpu())
        for key in keys:
            value = getattr(res, key)
            if value is not None:
                out[key].append(value.float().cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in out.items() if v}
