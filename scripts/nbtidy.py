"""Executed notebooks that read like a terminal: each progress bar keeps its last state.

papermill stores every refresh of a tqdm bar as its own stream output (``"\\r" + bar``).
Jupyter draws them over each other; GitHub and the book print them one under another,
hundreds of lines per epoch. :func:`tidy_notebook` merges consecutive outputs of the same
stream and keeps, per line, what a terminal would last have shown (a bar that cleared
itself at the end keeps its final state, so the reader still sees how long it took).

Usage: ``python scripts/nbtidy.py NOTEBOOK.ipynb [...]`` (``make notebooks`` runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat


def resolve_carriage_returns(text: str) -> str:
    r"""Apply ``\r`` as a terminal does: later text overwrites the line from column 0.

    A line that ends blank (a bar that erased itself) keeps its last visible state.
    """
    lines = []
    for line in text.split("\n"):
        shown = last_visible = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
            if shown.strip():
                last_visible = shown
        lines.append((shown if shown.strip() else last_visible).rstrip())
    return "\n".join(lines)


def tidy_outputs(outputs: list) -> list:
    """Merge consecutive same-stream outputs and resolve their carriage returns."""
    tidy: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and tidy
                and tidy[-1].get("output_type") == "stream" and tidy[-1]["name"] == out["name"]):
            tidy[-1]["text"] += out["text"]
        else:
            tidy.append(out)
    for out in tidy:
        if out.get("output_type") == "stream" and "\r" in out["text"]:
            out["text"] = resolve_carriage_returns(out["text"])
    return tidy


def tidy_notebook(path: str | Path) -> int:
    """Tidy every code cell's outputs in place; returns how many outputs were removed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            before = len(cell.outputs)
            cell.outputs = tidy_outputs(cell.outputs)
            removed += before - len(cell.outputs)
    nbformat.write(nb, path)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/nbtidy.py", description=__doc__.split(
        "\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        if not nb.is_file():
            print(f"error: no such notebook: {nb}", file=sys.stderr)
            return 2
        removed = tidy_notebook(nb)
        print(f"tidied {nb}: {removed} stream outputs merged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
