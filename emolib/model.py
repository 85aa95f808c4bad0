"""The full model: two encoders, projections into one space, fusion, classifier.

    text  -> TextEncoder  -> Linear -> L2-norm -> t ┐
                                                    ├─ InfoNCE(t, v)          (alignment)
    image -> ImageEncoder -> Linear -> L2-norm -> v ┘
    [t, v, t*v] -> fusion (attention or concat) -> classifier -> emoticon logits

    loss = CE(logits, y) + lambda * InfoNCE(t, v)

``mode="text"``/``"image"`` drops the other branch (ablations). Saved as
``config.json`` + ``model.safetensors`` (+ the tokenizer), never pickled.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn

from emolib.config import ModelConfig, model_config_from_dict
from emolib.data import normalize_images
from emolib.encoders import ImageEncoder, TextEncoder
from emolib.fusion import AttentionFusion, ConcatFusion, modality_tokens
from emolib.losses import ContrastiveLoss


@dataclass
class ModelOutput:
    logits: torch.Tensor
    text_embed: torch.Tensor | None = None     # (B, D), L2-normalised
    image_embed: torch.Tensor | None = None    # (B, D), L2-normalised
    fusion_weights: torch.Tensor | None = None  # (B, heads, tokens) for attention fusion
    contrastive: torch.Tensor | None = None    # InfoNCE of this (global) batch


class EmoticonModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.embed_dim
        self.text_encoder = self.image_encoder = None
        self.text_proj = self.image_proj = self.contrastive = None
        if cfg.mode in ("both", "text"):
            self.text_encoder = TextEncoder(cfg.text)
            self.text_proj = nn.Linear(self.text_encoder.hidden_size, d)
        if cfg.mode in ("both", "image"):
            self.image_encoder = ImageEncoder(cfg.image)
            self.image_proj = nn.Linear(self.image_encoder.hidden_size, d)
        if cfg.mode == "both":
            self.contrastive = ContrastiveLoss(cfg.init_temperature)
        tokens = 3 if cfg.mode == "both" else 1
        if cfg.fusion == "attention":
            self.fusion = AttentionFusion(d, tokens, cfg.fusion_heads, cfg.dropout)
        else:
            self.fusion = ConcatFusion(d, tokens, cfg.dropout)
        self.classifier = nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.dropout),
                                        nn.Linear(d, cfg.num_classes))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    features: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: precomputed frozen-layer output (:mod:`emolib.frozen_features`)."""
        if self.text_encoder is None:
            raise RuntimeError("this model has no text branch (mode='image')")
        hidden = self.text_encoder(input_ids, attention_mask, features)
        return F.normalize(self.text_proj(hidden), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.image_encoder is None:
            raise RuntimeError("this model has no image branch (mode='text')")
        if pixel_values.dtype == torch.uint8:  # cached batches: normalise on the device
            pixel_values = normalize_images(pixel_values)
        return F.normalize(self.image_proj(self.image_encoder(pixel_values)), dim=-1)

    def forward(self, pixel_values: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                text_features: torch.Tensor | None = None, **_: object) -> ModelOutput:
        t = self.encode_text(input_ids, attention_mask, text_features) if self.text_encoder \
            else None
        v = self.encode_image(pixel_values) if self.image_encoder else None
        fused, weights = self.fusion(modality_tokens(t, v))
        logits = self.classifier(fused)
        contrastive = self.contrastive(t.float(), v.float()) if self.contrastive else None
        return ModelOutput(logits, t, v, weights, contrastive)

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write config.json (with each backbone's HF config) and model.safetensors."""
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
        (folder / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False)
                                            + "\n", encoding="utf-8")
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


def compute_loss(out: ModelOutput, labels: torch.Tensor, contrastive_weight: float
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE + lambda * InfoNCE; returns the total and its (detached) parts."""
    ce = F.cross_entropy(out.logits.float(), labels)
    parts = {"ce": ce.detach()}
    loss = ce
    if out.contrastive is not None:
        parts["contrastive"] = out.contrastive.detach()
        if contrastive_weight:
            loss = loss + contrastive_weight * out.contrastive
    return loss, parts
