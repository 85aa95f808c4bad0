"""Loading pretrained encoders honestly: no socket probe, and a report of missing weights."""

import logging

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from emolib.config import EncoderConfig
from emolib.encoders import TextEncoder

ARCH = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=32, vocab_size=100)


def saved_bert(folder, drop: str | None = None):
    """A tiny BERT checkpoint (with its pooler) in ``folder``, minus the keys containing
    ``drop``."""
    arch = dict(ARCH)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    if drop:
        state = {k: v for k, v in state.items() if drop not in k}
    save_file(state, weights, metadata={"format": "pt"})
    return folder


def test_a_checkpoint_missing_a_layer_says_so(tmp_path, caplog):
    folder = saved_bert(tmp_path / "bert", drop="encoder.layer.1.output.dense")
    with caplog.at_level(logging.WARNING, logger="emolib.encoders"):
        enc = TextEncoder(EncoderConfig(name=str(folder), pretrained=True))
    assert enc.pretrained
    warned = [r.getMessage() for r in caplog.records]
    assert any("not in the checkpoint" in m and "layer.1.output.dense" in m for m in warned)


def test_the_unused_pooler_is_no_news(tmp_path, caplog):
    folder = saved_bert(tmp_path / "bert")
    with caplog.at_level(logging.WARNING, logger="emolib.encoders"):
        enc = TextEncoder(EncoderConfig(name=str(folder), pretrained=True))
    assert enc.source.startswith("pretrained:") and caplog.records == []
    want = AutoModel.from_pretrained(folder, add_pooling_layer=False)
    for key, value in want.state_dict().items():
        assert torch.equal(enc.backbone.state_dict()[key], value), key


def test_an_unreachable_hub_id_falls_back_to_random_init_with_a_warning(caplog,
                                                                        monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="emolib.encoders"):
        enc = TextEncoder(EncoderConfig(name="nobody/no-such-model", pretrained=True,
                                        arch=ARCH))
    assert enc.source == "random"
    assert any("using random init" in r.getMessage() for r in caplog.records)
