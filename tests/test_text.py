"""emolib.text: what the text encoder reads, pinned character by character."""

import pytest

from emolib.text import (
    bare_emoji,
    demojize,
    emoji_name,
    find_emoji,
    normalize_tweet,
    remove_emoji,
    strip_emoji,
)


def test_demojize_writes_emoji_as_plain_words():
    assert demojize("hi 😂") == "hi  face with tears of joy "  # no underscores, no colons
    assert demojize("no emoji") == "no emoji"


@pytest.mark.parametrize("symbol, bare", [("👍🏽", "👍"), ("👍🏻", "👍"), ("👍🏿", "👍"),
                                          ("❤️", "❤"), ("❤︎", "❤"), ("😂", "😂"),
                                          ("👍🏽👍", "👍👍")])
def test_bare_emoji_drops_skin_tones_and_variation_selectors(symbol, bare):
    assert bare_emoji(symbol) == bare


def test_bare_emoji_keeps_the_codepoints_just_outside_the_modifier_range():
    # U+1F3FA (amphora) sits just below the skin tones U+1F3FB..U+1F3FF, U+1F400 (rat) after
    assert bare_emoji("\U0001F3FA\U0001F400") == "\U0001F3FA\U0001F400"
    assert bare_emoji("a\ufe0fb\ufe0ec") == "abc"


def test_remove_emoji_takes_out_only_the_label_set_in_any_form():
    labels = frozenset({"😂", "❤"})
    assert remove_emoji("so  😂 funny ❤️ ok", labels) == "so funny ok"
    assert remove_emoji("love it 🦄", labels) == "love it 🦄"  # not a label: kept as is
    assert remove_emoji("  spaced   out  ", labels) == "  spaced   out  "  # untouched text
    assert remove_emoji("😂😂", labels) == ""
    assert remove_emoji("keep 😂", frozenset()) == "keep 😂"


def test_normalize_tweet_placeholders_and_whitespace():
    text = "  @bob_1 look www.x.com/a  and https://t.co/z 🦄\n!"
    assert normalize_tweet(text) == "@user look http and http unicorn !"
    assert normalize_tweet("mail me at a@b.com") == "mail me at a@b.com"  # not a mention
    assert normalize_tweet("http://a.b/c?d=1 done") == "http done"
    assert normalize_tweet("@x") == "@user"


def test_find_strip_and_name_emoji():
    assert find_emoji("a 👍🏽 b 😂❤️ 👨‍👩‍👧") == ["👍🏽", "😂", "❤️", "👨‍👩‍👧"]
    assert find_emoji("none") == []
    assert strip_emoji(" a 👍🏽 b  😂 ") == "a b"
    assert strip_emoji("a👍b") == "a b"  # an emoji between words leaves a space
    assert emoji_name("😂") == "face with tears of joy"
    assert emoji_name("👍🏽") == "thumbs up medium skin tone"
