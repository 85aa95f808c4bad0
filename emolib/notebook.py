"""What every notebook does first: pick the profile, find where data and runs live, make
sure the profile's dataset exists.

Notebooks run from ``notebooks/`` (papermill, nbval), from a clone in Jupyter, or on
Colab after ``pip install``. ``EMOLIB_HOME`` (e.g. a folder on a mounted Google Drive)
holds ``data/`` and ``runs/``, so a disconnect loses nothing; by default they live in the
repository (or the working folder, outside a clone).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from emolib.config import Profile, get_profile, resolve_profile
from emolib.hardware import default_device
from emolib.layout import is_complete
from emolib.prepare.emosynth import generate
from emolib.synth import SynthConfig

#: EmoSynth per profile: (folder under data/, posts, image size)
DATASETS = {"smoke": ("emosynth-smoke", 400, 64), "cpu": ("synthetic", 6000, 64),
            "gpu": ("synthetic-224", 20000, 224)}


def home(start: str | Path | None = None) -> Path:
    """``EMOLIB_HOME`` if set, else the clone holding ``start`` (default: cwd), else cwd."""
    if os.environ.get("EMOLIB_HOME"):
        return Path(os.environ["EMOLIB_HOME"]).expanduser().resolve()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "emolib").is_dir():
            return folder
    return here


@dataclass
class Session:
    profile: Profile
    reason: str       # why this profile (e.g. "auto: no CUDA GPU")
    root: Path        # where data/ and runs/ live
    data_dir: Path
    device: torch.device

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / self.profile.name / name


def ensure_emosynth(profile: str, root: Path, progress: bool = True) -> Path:
    """Build the profile's EmoSynth once (deterministic; seconds for smoke and cpu)."""
    folder, size, image_size = DATASETS[profile]
    out = root / "data" / folder
    if not is_complete(out):
        generate(out, SynthConfig(size=size, image_size=image_size), progress=progress,
                 workers=min(8, os.cpu_count() or 1))
    return out


def setup(profile: str | None = None, seed: int = 0, progress: bool = True) -> Session:
    """Profile (argument, else EMOLIB_PROFILE, else auto), seeded, with its dataset ready."""
    from emolib.train import set_seed

    name, reason = resolve_profile(profile)
    root = home()
    set_seed(seed)
    data = ensure_emosynth(name, root, progress)
    return Session(get_profile(name), reason, root, data, default_device())


def hardware() -> dict[str, str]:
    """A one-line description of where this notebook runs (for the book's honesty)."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
