"""Activation checkpointing (``--grad-checkpointing``): less memory, the same gradient."""

import warnings

import pytest
import torch

from emolib.config import TrainConfig, get_profile
from emolib.losses import compute_loss
from emolib.model import EmoticonModel
from emolib.train import enable_grad_checkpointing


@pytest.mark.parametrize("last_layers", [None, 1])
def test_checkpointed_encoders_give_the_same_gradient(last_layers):
    """Also with a frozen bottom (``train_last_layers``), where no input of a checkpointed
    layer needs a gradient: reentrant checkpointing would then give its weights none."""
    cfg = get_profile("smoke").model
    cfg.dropout = 0.0
    for enc in (cfg.text, cfg.image):
        enc.arch = {**enc.arch, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        enc.train_last_layers = last_layers
    g = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8,
                                           generator=g),
             "input_ids": torch.randint(100, 1000, (4, 10), generator=g),
             "attention_mask": torch.ones(4, 10, dtype=torch.long),
             "labels": torch.tensor([0, 1, 2, 3])}

    def grads(checkpointing: bool) -> dict:
        torch.manual_seed(0)
        model = EmoticonModel(cfg).double().train()
        if checkpointing:
            with warnings.catch_warnings():  # asked by transformers' current name
                warnings.simplefilter("error", FutureWarning)
                enable_grad_checkpointing(model, TrainConfig(grad_checkpointing=True))
            for enc in (model.text_encoder, model.image_encoder):
                assert getattr(enc.backbone, "is_activation_checkpointing", None) or \
                    enc.backbone.is_gradient_checkpointing
        compute_loss(model(**batch), batch["labels"], 0.5)[0].backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name, value in plain.items():
        torch.testing.assert_close(checkpointed[name], value, rtol=1e-10, atol=1e-12, msg=name)
