"""Robust image decoding: every image comes out as RGB or as a named reason to skip it.

Real collections hold every kind of file a camera, a phone or an editor can write: CMYK
JPEGs, PNGs with alpha or a palette, 16-bit scans, photos whose pixels are stored sideways
with an EXIF note saying how to turn them, half-downloaded files, and now and then a
"decompression bomb" (a tiny file that expands to gigabytes). ``load_rgb`` turns each of
them into a plain 8-bit RGB picture the right way up, or raises :class:`ImageSkip` with a
short reason that the converters count and print in their skip summary.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

#: Images with more pixels than this are refused as possible decompression bombs.
MAX_PIXELS = 8000 * 8000
#: Images smaller than this on either side carry no usable content.
MIN_SIDE = 8

#: Every reason ``load_rgb`` can give, with what it means (used in docs and summaries).
REASONS = {
    "missing": "the image file does not exist",
    "empty-file": "the image file has zero bytes",
    "corrupt": "not a readable image (wrong format or damaged header)",
    "truncated": "the image data ends early (an interrupted download or copy)",
    "too-small": f"smaller than {MIN_SIDE} px on a side (e.g. a 1x1 tracking pixel)",
    "too-large": f"more than {MAX_PIXELS:,} pixels (possible decompression bomb)",
    "unsupported-mode": "a pixel format that cannot be turned into RGB",
}

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageSkip(Exception):
    """An image that cannot be used; ``reason`` is a short key for skip summaries."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def load_rgb(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, EXIF-orient and convert an image to 8-bit RGB, or raise ImageSkip.

    ``source`` is a path or the encoded bytes of an image (as stored in parquet files).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "<bytes>"
        if not data:
            raise ImageSkip("empty-file", name)
        stream: io.BytesIO | Path = io.BytesIO(data)
    else:
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise ImageSkip("missing", str(path))
        if path.stat().st_size == 0:
            raise ImageSkip("empty-file", str(path))
        stream = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                if img.width * img.height > max_pixels:
                    raise ImageSkip("too-large", f"{name}: {img.width}x{img.height} px "
                                    f"> {max_pixels:,}")
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = to_rgb(img)
    except ImageSkip:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageSkip("too-large", f"{name}: {err}") from err
    except OSError as err:
        # Pillow says "image file is truncated" / "broken data stream" for cut-off files.
        text = str(err).lower()
        reason = "truncated" if ("truncated" in text or "broken data stream" in text) \
            else "corrupt"
        raise ImageSkip(reason, f"{name}: {err}") from err
    except (ValueError, SyntaxError, EOFError) as err:
        raise ImageSkip("corrupt", f"{name}: {err}") from err
    if min(rgb.size) < MIN_SIDE:
        raise ImageSkip("too-small", f"{name}: {rgb.width}x{rgb.height}")
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB; alpha goes on white."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT:
        # A plain convert("L") clips 16-bit values at 255 (a white picture): rescale first.
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ImageSkip("unsupported-mode", f"mode {img.mode}: {err}") from err
