import json
import math

import pytest
import torch

from emolib.config import get_profile
from emolib.fusion import AttentionFusion, ConcatFusion, modality_tokens
from emolib.losses import compute_loss
from emolib.model import EmoticonModel, text_features


def batch(n=4, size=32, length=10):
    g = torch.Generator().manual_seed(0)
    return {"pixel_values": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                                          generator=g),
            "input_ids": torch.randint(100, 1000, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.tensor([0, 1, 2, 3][:n])}


def test_attention_weights_are_a_distribution_per_head_and_depend_on_input():
    fusion = AttentionFusion(16, num_tokens=3, heads=4)
    t, v = torch.randn(5, 16), torch.randn(5, 16)
    fused, w = fusion(modality_tokens(t, v))
    assert fused.shape == (5, 16) and w.shape == (5, 4, 3)
    assert torch.allclose(w.sum(-1), torch.ones(5, 4), atol=1e-6)
    assert not torch.allclose(w[0], w[1])  # content-dependent, not a constant gate
    fused.sum().backward()
    assert fusion.query.grad is not None and fusion.query.grad.abs().sum() > 0


def test_attention_pooling_matches_a_manual_computation():
    fusion = AttentionFusion(8, num_tokens=3, heads=2).eval()
    tokens = torch.randn(2, 3, 8)
    _, w = fusion(tokens)
    x = fusion.norm(tokens + fusion.type_embed)
    k = fusion.key(x).view(2, 3, 2, 4)
    manual = torch.stack([torch.softmax(torch.stack([fusion.query[h] @ k[b, m, h] / 2
                                                     for m in range(3)]), 0)
                          for b in range(2) for h in range(2)]).view(2, 2, 3)
    assert torch.allclose(w, manual, atol=1e-6)


def test_concat_fusion_and_single_modality_tokens():
    fused, w = ConcatFusion(16, num_tokens=3)(torch.randn(5, 3, 16))
    assert fused.shape == (5, 16) and w is None
    assert modality_tokens(torch.randn(2, 8), None).shape == (2, 1, 8)
    with pytest.raises(ValueError):
        modality_tokens(None, None)


@pytest.mark.parametrize("mode, fusion", [("both", "attention"), ("both", "concat"),
                                          ("text", "attention"), ("image", "concat")])
def test_model_modes_give_unit_embeddings_and_train_every_parameter(mode, fusion):
    cfg = get_profile("smoke").model
    cfg.mode, cfg.fusion = mode, fusion
    torch.manual_seed(0)
    model = EmoticonModel(cfg)
    b = batch()
    out = model(**b)
    assert out.logits.shape == (4, cfg.num_classes)
    assert (out.text_embed is None) == (mode == "image")
    assert (out.image_embed is None) == (mode == "text")
    assert (out.logit_scale is None) == (mode != "both")
    for emb in (out.text_embed, out.image_embed):
        if emb is not None:
            assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    loss, parts = compute_loss(out, b["labels"], 0.5)
    loss.backward()
    # one modality token: attention over a single token is 1 whatever the query and keys
    inert = ("fusion.query", "fusion.key.") if mode != "both" else ()
    for name, p in model.named_parameters():
        if p.requires_grad and "pooler" not in name and not name.startswith(inert):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_contrastive_term_reaches_the_embeddings():
    """Gradients at the embeddings change with lambda: the InfoNCE term is not detached."""
    model = EmoticonModel(get_profile("smoke").model).eval()
    b = batch()

    def embed_grads(weight):
        out = model(**b)
        out.text_embed.retain_grad()
        out.image_embed.retain_grad()
        compute_loss(out, b["labels"], weight)[0].backward()
        model.zero_grad()
        return out.text_embed.grad.clone(), out.image_embed.grad.clone()

    (t0, v0), (t1, v1) = embed_grads(0.0), embed_grads(1.0)
    assert not torch.allclose(t0, t1) and not torch.allclose(v0, v1)


def test_frozen_text_features_equal_the_encoder_path(tiny_synth):
    from emolib.run import experiment

    exp = experiment("smoke", tiny_synth, progress=False)
    exp.model.text.freeze = True
    torch.manual_seed(0)
    model = EmoticonModel(exp.model).train()  # frozen encoder: eval mode, no dropout
    cache = text_features(model, exp.cache, batch_size=7)
    assert cache.text_features.shape == (len(cache), model.text_encoder.hidden_size)
    idx = cache.indices("val")[:5]
    ids, mask = cache.input_ids[idx].long(), cache.attention_mask[idx].long()
    want = model.encode_text(ids, mask)
    assert torch.allclose(model.encode_text(ids, mask, cache.text_features[idx]), want,
                          atol=1e-6)
    exp.model.text.freeze = False
    assert text_features(EmoticonModel(exp.model), exp.cache) is exp.cache


def test_loss_is_ce_plus_lambda_contrastive():
    model = EmoticonModel(get_profile("smoke").model)
    b = batch()
    out = model(**b)
    l0, parts = compute_loss(out, b["labels"], 0.0)
    l2, _ = compute_loss(out, b["labels"], 2.0)
    assert l0.item() == pytest.approx(parts["ce"].item())
    expected = parts["ce"].item() + 2 * parts["contrastive"].item()
    assert l2.item() == pytest.approx(expected, rel=1e-6)


def test_save_load_round_trip_is_exact_and_offline(tmp_path):
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).eval()
    model.save(tmp_path / "m", extra={"labels": []})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["backbones"]["text"]["source"] == "random"
    loaded = EmoticonModel.load(tmp_path / "m").eval()
    b = batch()
    assert torch.equal(model(**b).logits, loaded(**b).logits)


def test_bad_model_config_is_refused():
    cfg = get_profile("smoke").model
    cfg.fusion = "sum"
    with pytest.raises(ValueError, match="fusion must be"):
        EmoticonModel(cfg)


def test_no_unsafe_torch_load_anywhere():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    for path in list((root / "emolib").rglob("*.py")) + list((root / "benchmarks").rglob("*.py")):
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "trust_remote_code=True" not in path.read_text(), path


def _text_encoder(**freezing):
    from emolib.config import EncoderConfig
    from emolib.encoders import TextEncoder

    arch = dict(model_type="bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=32, vocab_size=1000,
                hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    return TextEncoder(EncoderConfig(name=None, pretrained=False, arch=arch, **freezing))


def test_frozen_blocks_stay_in_eval_mode_and_trainable_ones_follow_train():
    enc = _text_encoder(train_last_layers=1)
    layers = enc.backbone.encoder.layer
    for mode in (True, False, True):
        enc.train(mode)
        assert not enc.backbone.embeddings.training
        assert [layer.training for layer in layers] == [False, False, mode]
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    # the whole model's .train() reaches the encoder's override
    model = EmoticonModel(get_profile("smoke").model)
    model.train()
    assert model.text_encoder.training


def test_a_fully_frozen_encoder_is_deterministic_in_train_mode():
    ids = torch.randint(5, 1000, (3, 8))
    mask = torch.ones_like(ids)
    frozen, free = _text_encoder(freeze=True).train(), _text_encoder().train()
    assert torch.equal(frozen(ids, mask), frozen(ids, mask))      # no dropout noise
    assert not torch.equal(free(ids, mask), free(ids, mask))      # dropout active


def test_train_last_layers_works_for_the_vit_image_encoder():
    """transformers 5 keeps ViT's blocks at ``model.layers`` (no ``.encoder``)."""
    cfg = get_profile("smoke").model
    cfg.image.train_last_layers = 1
    enc = EmoticonModel(cfg).image_encoder.train()
    layers = enc.backbone.layers
    assert [layer.training for layer in layers] == [False, True]
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    emb = enc.backbone.embeddings  # frozen; the conv stem, a new layer, trains
    assert not emb.cls_token.requires_grad and not emb.position_embeddings.requires_grad


# ---------------------------------------------------------------- fusion, pinned by hand
def test_modality_tokens_are_text_image_and_their_product():
    t, v = torch.randn(2, 4), torch.randn(2, 4)
    tokens = modality_tokens(t, v)
    assert torch.equal(tokens, torch.stack([t, v, t * v], 1))
    assert torch.equal(modality_tokens(None, v), v.unsqueeze(1))
    assert torch.equal(modality_tokens(t, None), t.unsqueeze(1))
    with pytest.raises(ValueError, match="^give at least one modality$"):
        modality_tokens(None, None)


def test_fusion_defaults_take_the_three_tokens():
    att = AttentionFusion(16)
    assert att.type_embed.shape == (3, 16) and att.out_dim == 16
    _, w = att(torch.randn(2, 3, 16))
    assert w.shape == (2, 4, 3)  # 4 heads by default
    cat = ConcatFusion(16)
    assert cat(torch.randn(2, 3, 16))[0].shape == (2, 16) and cat.out_dim == 16
    with pytest.raises(ValueError, match="dim 10 must be divisible by heads 4"):
        AttentionFusion(10)


def test_attention_fusion_output_matches_a_manual_computation():
    torch.manual_seed(0)
    f = AttentionFusion(8, num_tokens=3, heads=2).eval()
    with torch.no_grad():
        f.type_embed.normal_()  # zero at init: give it a value that shows
    tokens = torch.randn(2, 3, 8)
    fused, w = f(tokens)
    x = torch.nn.functional.layer_norm(tokens + f.type_embed, (8,), f.norm.weight, f.norm.bias)
    v = f.value(x).view(2, 3, 2, 4)
    pooled = torch.stack([sum(w[b, h, m] * v[b, m, h] for m in range(3))
                          for b in range(2) for h in range(2)]).view(2, 8)
    out = f.out(pooled)
    mlp = f.mlp[4](torch.nn.functional.gelu(f.mlp[1](f.mlp[0](out))))
    assert torch.allclose(fused, out + mlp, atol=1e-6)


def test_the_query_starts_at_scale_one_over_root_head_dim():
    torch.manual_seed(0)
    f = AttentionFusion(512, heads=2)  # head_dim 256: 512 draws
    assert f.query.std().item() == pytest.approx(256 ** -0.5, rel=0.15)


def test_concat_fusion_matches_a_manual_computation_and_drops_out_in_training():
    torch.manual_seed(0)
    f = ConcatFusion(4, num_tokens=3, dropout=0.5).eval()
    tokens = torch.randn(5, 3, 4)
    x = tokens.flatten(1)
    ln, lin1, lin2 = f.proj[0], f.proj[1], f.proj[4]
    want = lin2(torch.nn.functional.gelu(lin1(torch.nn.functional.layer_norm(
        x, (12,), ln.weight, ln.bias))))
    assert torch.allclose(f(tokens)[0], want, atol=1e-6)
    f.train()
    assert not torch.equal(f(tokens)[0], f(tokens)[0])  # dropout active in training


# ---------------------------------------------------------------- the model's contract
def test_the_scale_starts_at_one_over_the_initial_temperature():
    cfg = get_profile("smoke").model
    cfg.init_temperature = 0.05
    model = EmoticonModel(cfg)
    assert model.logit_scale.item() == pytest.approx(math.log(20.0))
    assert model.temperature == pytest.approx(0.05)
    out = model(**batch())
    assert out.logit_scale.item() == pytest.approx(20.0)
    assert out.logit_scale.requires_grad
    cfg.mode = "text"
    assert EmoticonModel(cfg).temperature is None


@pytest.mark.parametrize("mode, call, message", [
    ("image", "encode_text", r"^this model has no text branch \(mode='image'\)$"),
    ("text", "encode_image", r"^this model has no image branch \(mode='text'\)$")])
def test_a_missing_branch_says_so(mode, call, message):
    cfg = get_profile("smoke").model
    cfg.mode = mode
    model, b = EmoticonModel(cfg), batch()
    args = (b["pixel_values"],) if call == "encode_image" else (b["input_ids"],
                                                                  b["attention_mask"])
    with pytest.raises(RuntimeError, match=message):
        getattr(model, call)(*args)


@pytest.mark.parametrize("mode", ["text", "image"])
def test_one_branch_models_ignore_the_other_input(mode):
    cfg = get_profile("smoke").model
    cfg.mode, cfg.fusion = mode, "concat"
    torch.manual_seed(0)
    model = EmoticonModel(cfg).eval()
    b, other = batch(), batch()
    other["pixel_values" if mode == "text" else "input_ids"] = \
        torch.zeros_like(b["pixel_values" if mode == "text" else "input_ids"])
    assert torch.equal(model(**b).logits, model(**other).logits)
    assert model.fusion.proj[1].in_features == cfg.embed_dim  # one token of embed_dim


@pytest.mark.parametrize("fusion", ["attention", "concat"])
def test_the_head_drops_out_at_the_configured_rate(fusion):
    cfg = get_profile("smoke").model
    cfg.dropout, cfg.fusion = 0.3, fusion
    model = EmoticonModel(cfg)
    drops = [m.p for m in model.classifier if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.3] and model.classifier[-1].out_features == cfg.num_classes
    assert [m.p for m in model.fusion.modules() if isinstance(m, torch.nn.Dropout)] == [0.3]


def test_the_classifier_normalises_then_projects():
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).eval()
    with torch.no_grad():
        model.classifier[0].weight.uniform_(0.5, 2)  # a LayerNorm that shows
    x = torch.randn(3, 32) * 5 + 2
    ln, lin = model.classifier[0], model.classifier[-1]
    want = lin(torch.nn.functional.layer_norm(x, (32,), ln.weight, ln.bias))
    assert torch.allclose(model.classifier(x), want, atol=1e-6)


def test_saved_config_is_readable_and_loading_never_reaches_for_the_hub(tmp_path):
    torch.manual_seed(0)
    cfg = get_profile("smoke").model
    model = EmoticonModel(cfg).eval()
    model.save(tmp_path / "m", extra={"labels": [{"emoji": "😂", "name": "joy"}], "epoch": 3})
    text = (tmp_path / "m" / "config.json").read_text(encoding="utf-8")
    assert "😂" in text  # written as text, not escaped
    config = json.loads(text)
    assert config["epoch"] == 3 and config["model"]["embed_dim"] == cfg.embed_dim
    assert set(config["backbones"]) == {"text", "image"}
    assert config["backbones"]["image"]["config"]["hidden_size"] == 32
    # a run trained from a hub checkpoint: loading rebuilds from the saved configs only
    config["model"]["text"].update(name="no-such-org/no-such-model", pretrained=True, arch={})
    config["model"]["image"].update(name="/no/such/folder", pretrained=True, arch={})
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    loaded = EmoticonModel.load(tmp_path / "m", device="cpu").eval()
    assert loaded.text_encoder.source == loaded.image_encoder.source == "random"
    assert torch.equal(model(**batch()).logits, loaded(**batch()).logits)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json",
                                                                  "model.safetensors"]
    cfg.mode = "text"
    EmoticonModel(cfg).save(tmp_path / "t")
    assert set(json.loads((tmp_path / "t" / "config.json").read_text())["backbones"]) == \
        {"text"}


def test_forward_is_encoders_then_fusion_then_classifier():
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).eval()
    b = batch()
    out = model(**b)
    t = model.encode_text(b["input_ids"], b["attention_mask"])
    v = model.encode_image(b["pixel_values"])
    fused, weights = model.fusion(modality_tokens(t, v))
    assert torch.allclose(out.text_embed, t) and torch.allclose(out.image_embed, v)
    assert torch.allclose(out.logits, model.classifier(fused), atol=1e-6)
    assert out.fusion_weights.shape == (4, 2, 3) and torch.allclose(out.fusion_weights, weights)


def test_padding_does_not_change_a_posts_embedding():
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).eval()
    b = batch(n=2, length=6)
    b["attention_mask"][0, 3:] = 0
    b["input_ids"][0, 3:] = 0
    alone = model.encode_text(b["input_ids"][:1, :3], b["attention_mask"][:1, :3])
    assert torch.allclose(model(**b).text_embed[:1], alone, atol=1e-5)


def test_given_text_features_replace_the_text_encoder():
    torch.manual_seed(0)
    model = EmoticonModel(get_profile("smoke").model).eval()
    b = batch()
    features = torch.zeros(4, model.text_encoder.hidden_size)
    out = model(**b, text_features=features)
    want = torch.nn.functional.normalize(model.text_proj.bias, dim=-1).expand(4, -1)
    assert torch.allclose(out.text_embed, want, atol=1e-6)


def test_save_into_a_new_nested_folder_and_over_an_old_one(tmp_path):
    model = EmoticonModel(get_profile("smoke").model)
    for _ in range(2):
        model.save(tmp_path / "a" / "b")
    loaded = EmoticonModel.load(tmp_path / "a" / "b")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
