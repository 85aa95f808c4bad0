"""Shared fixtures: a tiny EmoSynth dataset, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    from emolib.prepare.emosynth import generate
    from emolib.synth import SynthConfig

    out = tmp_path_factory.mktemp("data") / "emosynth"
    generate(out, SynthConfig(size=160, image_size=32, seed=3), progress=False)
    return out
