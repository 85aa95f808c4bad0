"""What every notebook does first: find the repo, pick the profile, make sure data exists.

Notebooks run from ``notebooks/`` (papermill, nbval), from a clone in Jupyter, or on
Colab after ``pip install``; :func:`setup` finds paths that work in each case.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from emolib.config import Profile, get_profile
from emolib.layout import is_complete
from emolib.prepare.emosynth import generate
from emolib.synth import SynthConfig

#: EmoSynth per profile: (folder under data/, posts, image size)
DATASETS = {"smoke": ("emosynth-smoke", 400, 64), "cpu": ("synthetic", 6000, 64),
            "gpu": ("synthetic-224", 20000, 224)}


def repo_root(start: str | Path | None = None) -> Path:
    """The folder holding pyproject.toml above ``start`` (default: cwd), else cwd."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "emolib").is_dir():
            return folder
    return here


@dataclass
class Session:
    profile: Profile
    root: Path
    data_dir: Path
    runs_dir: Path
    device: torch.device

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / self.profile.name / name


def ensure_emosynth(profile: str, root: Path, progress: bool = True) -> Path:
    """Build the profile's EmoSynth once (deterministic; seconds for smoke and cpu)."""
    folder, size, image_size = DATASETS[profile]
    out = root / "data" / folder
    if not is_complete(out):
        generate(out, SynthConfig(size=size, image_size=image_size), progress=progress)
    return out


def setup(profile: str | None = None, seed: int = 0, progress: bool = True) -> Session:
    """Profile from the argument or EMOLIB_PROFILE, seeded, with its dataset ready."""
    from emolib.train import set_seed

    prof = get_profile(profile)
    root = repo_root()
    set_seed(seed)
    data = ensure_emosynth(prof.name, root, progress)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Session(prof, root, data, root / "runs", device)


def hardware() -> dict[str, str]:
    """A one-line description of where this notebook runs (for the book's honesty)."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def on_colab() -> bool:
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in str(os.environ.get("_", ""))
