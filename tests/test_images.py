"""load_rgb: every kind of real-world image comes out RGB, or as a named skip."""

from __future__ import annotations

import fixtures_bad_data as fx
import numpy as np
import pytest
from PIL import Image

from emolib.images import REASONS, ImageSkip, load_rgb
from emolib.prepare.staging import MAX_SIDE, save_rgb


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(int(v) for v in img.getpixel(xy))


def test_rgb_jpeg_round_trips(tmp_path):
    img = load_rgb(fx.rgb_jpeg(tmp_path / "a.jpg"))
    assert (img.mode, img.size) == ("RGB", (64, 48))


def test_cmyk_becomes_red_rgb(tmp_path):
    img = load_rgb(fx.cmyk_jpeg(tmp_path / "c.jpg"))
    r, g, b = pixel(img, (20, 15))
    assert img.mode == "RGB" and r > 200 and g < 50 and b < 50


def test_rgba_alpha_goes_on_white(tmp_path):
    img = load_rgb(fx.rgba_png(tmp_path / "a.png"))
    assert pixel(img, (5, 5)) == (255, 255, 255)  # transparent half
    assert pixel(img, (35, 5)) == (0, 0, 255)  # opaque blue half


def test_palette_with_transparency(tmp_path):
    img = load_rgb(fx.palette_png(tmp_path / "p.png"))
    assert img.mode == "RGB" and pixel(img, (3, 3)) == (0, 128, 0)


def test_16_bit_grayscale_is_rescaled_not_clipped(tmp_path):
    img = load_rgb(fx.gray16_png(tmp_path / "g16.png"))
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert pixel(img, (0, 0)) == (156, 156, 156)  # 40000 >> 8; a clip would give 255


def test_grayscale(tmp_path):
    assert pixel(load_rgb(fx.gray_png(tmp_path / "g.png")), (1, 1)) == (77, 77, 77)


def test_exif_orientation_is_applied(tmp_path):
    path = fx.exif_rotated_jpeg(tmp_path / "r.jpg")
    assert Image.open(path).size == (60, 20)
    img = load_rgb(path)
    assert img.size == (20, 60)
    # orientation 6 = rotate 90° clockwise for display: the red top-left corner of the
    # stored picture ends up top-right
    r, g, b = pixel(img, (17, 3))
    assert r > 150 and g < 90 and b < 90


@pytest.mark.parametrize(("maker", "reason"), [
    (fx.one_by_one_png, "too-small"),
    (fx.zero_byte, "empty-file"),
    (fx.corrupt_file, "corrupt"),
    (fx.truncated_jpeg, "truncated"),
    (fx.bomb_png, "too-large"),
])
def test_bad_images_give_their_reason(tmp_path, maker, reason):
    path = maker(tmp_path / f"x.{'png' if 'png' in maker.__name__ else 'jpg'}")
    with pytest.raises(ImageSkip) as info:
        load_rgb(path)
    assert info.value.reason == reason
    assert reason in REASONS


@pytest.mark.parametrize("side", [8500, 11000])  # our limit (72 Mpx), Pillow's warning (121 Mpx)
def test_bombs_below_pillows_hard_limit(tmp_path, side):
    with pytest.raises(ImageSkip) as info:
        load_rgb(fx.bomb_png(tmp_path / "b.png", side=side))
    assert info.value.reason == "too-large"


def test_missing_file(tmp_path):
    with pytest.raises(ImageSkip, match="missing"):
        load_rgb(tmp_path / "nope.jpg")


def test_bytes_input(tmp_path):
    data = fx.rgba_png(tmp_path / "a.png").read_bytes()
    assert load_rgb(data).size == (40, 30)
    with pytest.raises(ImageSkip) as info:
        load_rgb(b"")
    assert info.value.reason == "empty-file"
    with pytest.raises(ImageSkip) as info:
        load_rgb(data[: len(data) // 2])
    assert info.value.reason == "truncated"


def test_save_rgb_downscales_longest_side(tmp_path):
    img = load_rgb(fx.big_jpeg(tmp_path / "big.jpg"))
    out = save_rgb(img, tmp_path / "small.jpg")
    saved = Image.open(out)
    assert (saved.format, saved.mode, saved.size) == ("JPEG", "RGB", (MAX_SIDE, 341))
    small = save_rgb(Image.fromarray(np.zeros((10, 20, 3), np.uint8)), tmp_path / "s.png")
    assert Image.open(small).format == "PNG" and Image.open(small).size == (20, 10)
