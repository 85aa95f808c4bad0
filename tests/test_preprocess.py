"""The one preprocessing path (emolib.preprocess.Preprocessor), pinned exactly: image size
and filter on non-square inputs, the text the tokenizer reads, the padding rule, a batch."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from emolib.config import get_profile
from emolib.encoders import load_tokenizer
from emolib.images import ImageSkip
from emolib.preprocess import Preprocessor


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(get_profile("smoke").model)


@pytest.fixture
def pre(tokenizer):
    return Preprocessor.for_labels(tokenizer, 16, 8, ["😂", "❤️"])


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_label_emoji_are_kept_in_their_bare_form(pre):
    assert pre.label_emoji == frozenset({"😂", "❤"})
    assert (pre.image_size, pre.max_length) == (16, 8)


@pytest.mark.parametrize("w, h", [(40, 23), (17, 61), (16, 30), (30, 16), (8, 8), (64, 64)])
def test_every_image_becomes_s_by_s_with_the_bicubic_filter(pre, tmp_path, w, h):
    img = noise(w, h)
    img.save(tmp_path / "x.png")
    got = pre.image(tmp_path / "x.png")
    want = np.asarray(img.resize((16, 16), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    assert got.dtype == np.uint8 and got.shape == (3, 16, 16)
    assert np.array_equal(got, want)


def test_an_image_already_at_size_is_not_resampled(pre, tmp_path):
    img = noise(16, 16, seed=1)
    img.save(tmp_path / "x.png")
    assert np.array_equal(pre.image(tmp_path / "x.png"),
                          np.asarray(img).transpose(2, 0, 1))


def test_bytes_and_bad_images(pre, tmp_path):
    buf = io.BytesIO()
    noise(20, 10).save(buf, format="PNG")
    assert pre.image(buf.getvalue()).shape == (3, 16, 16)
    with pytest.raises(ImageSkip) as skip:
        pre.image(tmp_path / "missing.png")
    assert skip.value.reason == "missing"


def test_text_removes_label_emoji_then_normalises(pre):
    assert pre.text("@bob so 😂 🦄 http://x.y") == "@user so unicorn http"
    assert pre.text("love ❤️ it") == "love it"  # any form of a label emoji


def test_tokenize_pads_and_truncates_to_max_length(pre, tokenizer):
    ids, mask = pre.tokenize(["hi there 😂", "a b c d e f g h i j k"])
    assert ids.dtype == torch.int32 and mask.dtype == torch.int8
    assert ids.shape == mask.shape == (2, 8)
    want = tokenizer("hi there")["input_ids"]  # the emoji was a label: gone
    assert ids[0, :len(want)].tolist() == want and mask[0].tolist() == [1] * len(want) + \
        [0] * (8 - len(want))
    assert ids[0, len(want):].eq(tokenizer.pad_token_id).all()
    assert ids[1, -1] == tokenizer.sep_token_id and mask[1].all()  # truncated, still closed


def test_a_batch_is_trimmed_to_its_longest_text(pre, tmp_path):
    noise(20, 30).save(tmp_path / "a.png")
    noise(30, 20, seed=2).save(tmp_path / "b.png")
    batch = pre(["hi", "hello there you"], [tmp_path / "a.png", tmp_path / "b.png"])
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    ids, mask = pre.tokenize(["hi", "hello there you"])
    width = int(mask.sum(1).max())
    assert width < 8
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    assert torch.equal(batch["input_ids"], ids[:, :width].long())
    assert torch.equal(batch["attention_mask"], mask[:, :width].long())
    assert batch["pixel_values"].dtype == torch.uint8
    assert np.array_equal(batch["pixel_values"][1].numpy(), pre.image(tmp_path / "b.png"))
