"""Point the book at another repository (a fork): python scripts/set_repository.py URL

repository.url in book/_config.yml is the one place that says where the repository
lives. This script changes it and rewrites everything derived from it: the Colab badges
(first cell of every chapter), the Colab install cells (second cell), the links to
emolib's source, the published address (GitHub Pages, html.baseurl) and README.md.
tests/test_book.py checks that they all agree with the config.

    python scripts/set_repository.py https://github.com/OWNER/REPO
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "book" / "_config.yml"
URL = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+)$")


def pages_url(repo_url: str) -> str:
    """GitHub Pages address of a repository: https://OWNER.github.io/REPO/."""
    owner, name = URL.match(repo_url).groups()
    return f"https://{owner.lower()}.github.io/{name}/"


def files() -> list[Path]:
    return ([CONFIG, ROOT / "README.md"] + sorted((ROOT / "book").glob("*.md"))
            + sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not URL.match(argv[0].rstrip("/")):
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    new = argv[0].rstrip("/")
    old = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["repository"]["url"].rstrip("/")
    pairs = [(old, new), (pages_url(old), pages_url(new)),
             ("colab.research.google.com/github/" + old.removeprefix("https://github.com/"),
              "colab.research.google.com/github/" + new.removeprefix("https://github.com/"))]
    for path in files():
        text = path.read_text(encoding="utf-8")
        changed = text
        for a, b in pairs:
            changed = changed.replace(a, b)
        if changed != text:
            path.write_text(changed, encoding="utf-8")
            print("updated", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
