"""One preprocessing path: what a model saw in training is what it sees in use.

:class:`Preprocessor` turns a post (text, image) into model inputs, and it is the only
code that does: the tensor cache of training, ``Run.predict``, retrieval and the notebooks
all call it.

* image: decoded robustly (:func:`emolib.images.load_rgb`), resized to S x S with PIL's
  bicubic filter, kept as uint8 (3, S, S); the image encoder normalises on the device.
* text: the label set's emoji removed (:func:`emolib.text.remove_emoji`), normalised as a
  tweet, tokenized and padded to ``max_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emolib.images import load_rgb
from emolib.text import bare_emoji, normalize_tweet, remove_emoji


@dataclass(frozen=True)
class Preprocessor:
    tokenizer: object
    image_size: int
    max_length: int
    label_emoji: frozenset[str] = frozenset()  # bare forms of the label set's emoji

    @classmethod
    def for_labels(cls, tokenizer, image_size: int, max_length: int,
                   emoji: Sequence[str]) -> Preprocessor:
        return cls(tokenizer, image_size, max_length, frozenset(map(bare_emoji, emoji)))

    def image(self, source: str | Path | bytes) -> np.ndarray:
        """uint8 (3, S, S); raises :class:`emolib.images.ImageSkip` for an unusable image."""
        img = load_rgb(source)
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)

    def text(self, raw: str) -> str:
        """What the tokenizer reads: label emoji removed, then normalised as a tweet."""
        return normalize_tweet(remove_emoji(raw, self.label_emoji))

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """int32 ids and int8 mask, (N, max_length): one padding rule everywhere."""
        tokens = self.tokenizer([self.text(t) for t in texts], padding="max_length",
                                truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        return tokens["input_ids"].to(torch.int32), tokens["attention_mask"].to(torch.int8)

    def __call__(self, texts: Sequence[str], images: Sequence[str | Path | bytes]
                 ) -> dict[str, torch.Tensor]:
        """A model batch for ``texts`` and their ``images`` (as the cache would serve it)."""
        ids, mask = self.tokenize(texts)
        width = max(int(mask.sum(1).max()), 1)
        return {"input_ids": ids[:, :width].long(), "attention_mask": mask[:, :width].long(),
                "pixel_values": torch.from_numpy(np.stack([self.image(i) for i in images]))}
