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


def demojize(text: str) -> str:
    """Write every emoji as its name in plain words."""
    out = emoji.demojize(text, delimiters=(" ", " "))
    return out.replace("_", " ")


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
