"""Tweet normalisation: what the text encoders see.

MiniLM/BERT vocabularies map emoji to [UNK], so emoji are written out as words
(``😂`` -> ``face with tears of joy``); mentions and URLs become placeholders, as in
TweetEval/BERTweet preprocessing.
"""

from __future__ import annotations

import re

import emoji

_MENTION = re.compile(r"(?<!\w)@\w+")
_URL = re.compile(r"(https?://\S+|www\.\S+)")
_SPACES = re.compile(r"\s+")
_MODIFIERS = set("\ufe0e\ufe0f") | {chr(c) for c in range(0x1F3FB, 0x1F400)}


def demojize(text: str) -> str:
    """Write every emoji as its name in plain words."""
    out = emoji.demojize(text, delimiters=(" ", " "))
    return out.replace("_", " ")


def bare_emoji(symbol: str) -> str:
    """One form per emoji: skin tones and variation selectors dropped (❤️ and ❤ are one)."""
    return "".join(c for c in symbol if c not in _MODIFIERS)


def remove_emoji(text: str, symbols: frozenset[str]) -> str:
    """``text`` without the emoji whose :func:`bare_emoji` form is in ``symbols``.

    Used with a dataset's label set: a post labelled 😂 that says 😂 would otherwise read
    "face with tears of joy", the name of its own label, and the model would learn to read
    the answer instead of the post.
    """
    if not symbols:
        return text
    out = emoji.replace_emoji(text, replace=lambda chars, _: " " if bare_emoji(chars)
                              in symbols else chars)
    return _SPACES.sub(" ", out).strip() if out != text else text


def normalize_tweet(text: str) -> str:
    """Mentions -> @user, URLs -> http, emoji -> words, whitespace collapsed."""
    text = _MENTION.sub("@user", text)
    text = _URL.sub("http", text)
    text = demojize(text)
    return _SPACES.sub(" ", text).strip()


def find_emoji(text: str) -> list[str]:
    """All emoji in ``text``, in order (multi-codepoint emoji count as one)."""
    return [match["emoji"] for match in emoji.emoji_list(text)]


def strip_emoji(text: str) -> str:
    """Remove every emoji and collapse the whitespace left behind."""
    return _SPACES.sub(" ", emoji.replace_emoji(text, replace=" ")).strip()


def emoji_name(symbol: str) -> str:
    """Human name of an emoji, e.g. 'face with tears of joy'."""
    name = emoji.demojize(symbol, delimiters=("", ""))
    return name.replace("_", " ")
