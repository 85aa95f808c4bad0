"""Print the Python and torch versions the committed notebook outputs were made with.

Used by .github/workflows/verify.yml (as GITHUB_OUTPUT lines) so that `make verify`
re-executes the chapters with the versions that produced the outputs it compares
against. Reads the hardware line the chapters print; needs only the standard library.
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recorded() -> dict[str, str]:
    pattern = re.compile(r"'python': '([\d.]+)', 'torch': '([\d.]+)")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for out in cell.get("outputs", []):
                m = pattern.search("".join(out.get("text", "")))
                if m:
                    return {"python": m.group(1), "torch": m.group(2)}
    raise SystemExit("no hardware line found in the committed outputs")


if __name__ == "__main__":
    for key, value in recorded().items():
        print(f"{key}={value}")
