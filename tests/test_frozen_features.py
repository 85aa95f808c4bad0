"""Frozen text features computed once give exactly what running every layer gives."""

import dataclasses

import pandas as pd
import pytest
import torch

from emolib import frozen_features
from emolib.config import EncoderConfig, get_profile
from emolib.data import BatchIterator
from emolib.encoders import TextEncoder
from emolib.frozen_features import compute_text_features, with_text_features
from emolib.model import EmoticonModel
from emolib.train import load_checkpoint, prepare, train

ARCH = dict(model_type="bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=32, vocab_size=30522,
            hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)


def encoder(**freezing):
    torch.manual_seed(0)
    return TextEncoder(EncoderConfig(name=None, pretrained=False, arch=ARCH, pooling="mean",
                                     **freezing))


def tokens():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 2000, (5, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[3, 2:] = 0, 0
    return ids, mask


@pytest.mark.parametrize("freezing, frozen", [({"train_last_layers": 1}, 2),
                                              ({"train_last_layers": 3}, 0),
                                              ({"freeze": True}, 3)])
def test_frozen_layer_count(freezing, frozen):
    assert encoder(**freezing).frozen_layers == frozen


@pytest.mark.parametrize("freezing", [{"train_last_layers": 1}, {"train_last_layers": 2},
                                      {"freeze": True}])
def test_features_path_equals_the_full_forward_and_its_gradients(freezing):
    ids, mask = tokens()
    results = []
    for use_features in (False, True):
        enc = encoder(**freezing).train()
        feats = enc.frozen_features(ids, mask) if use_features else None
        if feats is not None:
            feats = feats * mask[..., None]        # padding zeroed, as the cache stores it
        torch.manual_seed(7)                       # same dropout draws in the trained layers
        out = enc(ids, mask, feats)
        if out.requires_grad:
            out.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads))
    (full, g_full), (fast, g_fast) = results
    assert torch.allclose(full, fast, atol=1e-6)
    assert g_full.keys() == g_fast.keys()
    for name in g_full:
        assert torch.allclose(g_full[name], g_fast[name], atol=1e-6), name
    if freezing.get("freeze"):
        assert not g_full


def test_an_encoder_without_frozen_layers_has_nothing_to_precompute(tiny_synth):
    enc = encoder()
    with pytest.raises(ValueError, match="no frozen layers"):
        enc.frozen_features(*tokens())
    *_, cache = prepare("smoke", tiny_synth, progress=False)
    assert with_text_features(enc, cache) is cache
    assert with_text_features(None, cache) is cache


def test_cached_features_batches_and_memo(tiny_synth):
    *_, cache = prepare("smoke", tiny_synth, progress=False)
    enc = encoder(train_last_layers=1).eval()
    frozen_features.clear()
    fc = with_text_features(enc, cache)
    assert fc is not cache and cache.text_features is None       # caller's cache untouched
    assert fc.text_features.shape == (len(cache), cache.input_ids.shape[1], 32)
    assert with_text_features(enc, cache).text_features is fc.text_features  # computed once
    batch = next(iter(BatchIterator(fc, fc.indices("train"), 8)))
    width = batch["input_ids"].shape[1]
    assert batch["text_features"].shape == (8, width, 32)
    idx = fc.indices("train")[:8]
    direct = enc.frozen_features(batch["input_ids"], batch["attention_mask"])
    masked = direct * batch["attention_mask"][..., None]
    assert torch.allclose(batch["text_features"], masked, atol=1e-5)
    assert torch.equal(fc.text_features[idx, width:], torch.zeros_like(fc.text_features[idx,
                                                                                         width:]))
    with torch.no_grad():                                           # other weights: recomputed
        enc.backbone.embeddings.word_embeddings.weight.mul_(2)
    assert not torch.equal(with_text_features(enc, cache).text_features, fc.text_features)
    assert torch.allclose(compute_text_features(enc, cache, batch_size=7),
                          with_text_features(enc, cache).text_features, atol=1e-5)
    frozen_features.clear()


def test_training_with_cached_features_equals_training_without(tiny_synth, tmp_path):
    prof = get_profile("smoke")
    prof.model.text = dataclasses.replace(prof.model.text, arch=dict(
        prof.model.text.arch, num_hidden_layers=3), train_last_layers=1)
    runs = {}
    for cached in (False, True):
        runs[cached] = train(prof, tiny_synth, tmp_path / str(cached), progress=False,
                             epochs=2, batch_size=16, cache_text_features=cached)
    a = load_checkpoint(tmp_path / "False" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "True" / "checkpoint.pt")["model"]
    # equal up to float rounding (the features are computed at other batch widths):
    # 3e-5 after 2 epochs here
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4), key
    timing = ["epoch_seconds", "samples_per_second"]
    pd.testing.assert_frame_equal(runs[False].history.drop(columns=timing),
                                  runs[True].history.drop(columns=timing), rtol=1e-4)
    assert isinstance(runs[True].model, EmoticonModel)
    # a finished run only re-evaluates: nothing to train, so no features are computed
    frozen_features.clear()
    again = train(prof, tiny_synth, tmp_path / "True", progress=False, epochs=2, batch_size=16)
    assert not frozen_features._memo
    assert again.test_metrics == runs[True].test_metrics
