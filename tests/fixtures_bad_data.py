"""Image makers and a "bad data" twitter-emoticon folder with every real-world fault planted.

``make_bad_dataset(root)`` returns the exact skip counts a correct converter must report,
so the tests assert them rather than eyeball a log.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# ------------------------------------------------------------------ single images


def _pattern(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    base[: h // 2, : w // 2] = (220, 20, 20)  # a red top-left corner to test orientation
    return base


def rgb_jpeg(path: Path, size=(64, 48), seed: int = 0) -> Path:
    Image.fromarray(_pattern(*size, seed)).save(path, format="JPEG", quality=90)
    return path


def big_jpeg(path: Path) -> Path:
    return rgb_jpeg(path, size=(1200, 800), seed=1)


def cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, format="JPEG")  # pure red
    return path


def rgba_png(path: Path) -> Path:
    img = Image.new("RGBA", (40, 30), (0, 0, 255, 255))
    img.paste((0, 0, 0, 0), (0, 0, 20, 30))  # left half fully transparent
    img.save(path, format="PNG")
    return path


def palette_png(path: Path) -> Path:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([255, 255, 255, 0, 128, 0] + [0] * (254 * 3))
    img.info["transparency"] = 0
    img.save(path, format="PNG", transparency=0)
    return path


def gray16_png(path: Path) -> Path:
    arr = np.full((24, 24), 40000, dtype=np.uint16)  # 40000 / 256 = 156 in 8 bits
    Image.fromarray(arr).save(path, format="PNG")
    return path


def gray_png(path: Path) -> Path:
    Image.new("L", (24, 24), 77).save(path, format="PNG")
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 60x20 (landscape); EXIF orientation 6 says: show it turned, 20x60."""
    img = Image.fromarray(_pattern(60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", exif=exif.tobytes())
    return path


def one_by_one_png(path: Path) -> Path:
    Image.new("RGB", (1, 1), (1, 2, 3)).save(path, format="PNG")
    return path


def corrupt_file(path: Path) -> Path:
    path.write_bytes(b"this is not an image at all" * 10)
    return path


def truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(_pattern(80, 60, seed=3)).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def bomb_png(path: Path, side: int = 30000) -> Path:
    """A PNG header claiming ``side`` x ``side`` pixels: a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


GOOD_MAKERS = [rgb_jpeg, cmyk_jpeg, rgba_png, palette_png, gray16_png, gray_png,
               exif_rotated_jpeg, big_jpeg]

# ------------------------------------------------------------------ the bad dataset

CLASSES = ["😂", "❤️", "🔥"]
#: How the label cells spell each class: the emoji, an unqualified form, a :name:.
LABEL_SPELLING = {"😂": "😂", "❤️": "❤", "🔥": ":fire:"}
TEXTS = [
    "what a day at the beach", "¡Qué día tan bonito en la playa!", "今日は本当に楽しかった",
    "هذا رائع جدا", "यह बहुत अच्छा है", "je suis trop content", "best pizza ever 🍕 honestly",
    "can't stop laughing", "Das ist unglaublich", "my cat again", "sunset vibes",
    "\u200fshared with a right-to-left mark",
]
GOOD_PER_CLASS = 12

EXPECTED_SKIPS = {
    "corrupt": 1, "truncated": 1, "empty-file": 1, "too-small": 1, "too-large": 1,
    "missing": 4, "empty-text": 3, "unknown-label": 1, "duplicate-id": 1,
    "missing-label": 1, "outside-dataset": 5,
}
EXPECTED_ROWS = GOOD_PER_CLASS * len(CLASSES)


def make_bad_dataset(root: Path) -> dict:
    """Write a twitter-emoticon style folder (BOM CSV with upper-case column names, images,
    labels.json) whose good rows all convert and whose bad rows each hit one reason.

    Five rows name images outside ``root`` (``..``, an absolute path, a sibling dataset,
    ``/etc/passwd``, a symlink in ``images/`` that points out); the files they name exist,
    in ``root.parent / "outside"`` and ``root.parent / "sibling"``, and must never be opened.

    Returns {"skips": ..., "rows": ..., "outside": [files never to open]}.
    """
    images = root / "images"
    images.mkdir(parents=True)
    (root / "labels.json").write_text(json.dumps(
        [{"emoji": e, "name": e} for e in CLASSES], ensure_ascii=False), encoding="utf-8")
    rows: list[list[str]] = []
    n = 0
    for cls in CLASSES:
        for k in range(GOOD_PER_CLASS):
            maker = GOOD_MAKERS[n % len(GOOD_MAKERS)]
            ext = "png" if "png" in maker.__name__ else "jpg"
            maker(images / f"g{n:03d}.{ext}")
            text = TEXTS[n % len(TEXTS)] + f" {cls}"  # the label emoji sits in the text
            if n == 5:
                text = "long " * 500  # 2500 characters, kept whole
            # two ways of naming the image: in images/, and bare
            image = (f"images/g{n:03d}.{ext}", f"g{n:03d}.{ext}")[k % 2]
            rows.append([f"t{n:03d}", text, image, LABEL_SPELLING[cls]])
            n += 1
    bad_images = {"corrupt": corrupt_file, "truncated": truncated_jpeg,
                  "empty-file": zero_byte, "too-small": one_by_one_png, "too-large": bomb_png}
    for reason, maker in bad_images.items():
        name = f"bad-{reason}.{'png' if 'png' in maker.__name__ else 'jpg'}"
        maker(images / name)
        rows.append([f"b-{reason}", "a perfectly fine tweet", name, "😂"])
    (root.parent / "outside").mkdir(exist_ok=True)
    (root.parent / "sibling" / "images").mkdir(parents=True, exist_ok=True)
    secret = rgb_jpeg(root.parent / "outside" / "secret.jpg")
    sibling = rgb_jpeg(root.parent / "sibling" / "images" / "s.jpg")
    (images / "link.jpg").symlink_to(secret)
    (images / "loop.jpg").symlink_to("loop.jpg")  # a link to itself: no such file
    ok_image = "g000.jpg"
    rows += [
        ["b-missing", "image file is gone", "nowhere.jpg", "😂"],
        ["b-noimage", "no image cell", "", "🔥"],
        ["b-loop", "a symlink loop", "loop.jpg", "❤"],
        ["b-nul", "a NUL in the path", "g000\x00.jpg", "❤"],
        ["b-empty", "", ok_image, "😂"],
        ["b-space", "   \t  ", ok_image, "😂"],
        ["b-emoji-only", "😂😂 🔥 ❤️", ok_image, "😂"],
        ["b-unknown", "a robot posted this", ok_image, "🤖"],
        ["t000", "same id as the first row", ok_image, "😂"],
        ["b-nolabel", "who knows", ok_image, ""],
        ["b-up", "up and out", "../outside/secret.jpg", "😂"],
        ["b-absolute", "an absolute path", str(secret), "😂"],
        ["b-sibling", "another dataset", f"../{sibling.parent.parent.name}/images/s.jpg", "😂"],
        ["b-passwd", "not an image", "../" * 30 + "etc/passwd", "😂"],
        ["b-symlink", "a link that points out", "images/link.jpg", "🔥"],
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ID", "Text", "Image", "Label"])
    writer.writerows(rows)
    (root / "tweets.csv").write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    return {"skips": dict(EXPECTED_SKIPS), "rows": EXPECTED_ROWS,
            "outside": [secret, sibling, Path("/etc/passwd")]}
