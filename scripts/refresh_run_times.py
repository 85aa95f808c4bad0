"""Write each chapter's measured run time into the box at its top.

The time is papermill's record of the notebook's last execution
(``metadata.papermill.duration``, written by ``make notebooks``/``make book``), so the
box says what was measured, on the machine that executed the notebook. Only an
execution with the ``cpu`` profile updates the ``cpu`` time; the ``gpu`` time stays
"not yet measured" until someone writes a measured one. ``make notebooks`` runs this
after executing each chapter; tests/test_book.py checks the stated times against the
metadata (within 30%), so a stale box fails the tests.

    python scripts/refresh_run_times.py [notebooks/NN_name.ipynb ...]
"""

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# the measured part of the box's run-time line: "`cpu` profile: about 25 s (measured ...)"
CPU_TIME = re.compile(r"`cpu` profile: about (\d+(?:\.\d+)?) (s|min) \(measured[^)]*\)")


def stated(seconds: float) -> str:
    """Seconds rounded for reading: to 5 s below two minutes, else to whole minutes."""
    if seconds < 120:
        return f"about {max(5, 5 * round(seconds / 5))} s"
    return f"about {round(seconds / 60)} min"


def stated_seconds(text: str) -> float | None:
    """The cpu time a box states, in seconds (None if it states none)."""
    m = CPU_TIME.search(text)
    if not m:
        return None
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def executed_profile(nb) -> tuple[str | None, str | None]:
    """(profile, CPU threads) printed by the chapter's setup cell, if any."""
    profile = threads = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            profile = profile or (m.group(1) if (m := re.search(r"profile: (\w+)", text))
                                  else None)
            threads = threads or (m.group(1) if (m := re.search(
                r"'cpu_threads': '(\d+)'", text)) else None)
    return profile, threads


def refresh(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    duration = nb.metadata.get("papermill", {}).get("duration")
    profile, threads = executed_profile(nb)
    first = nb.cells[0]
    if duration is None or profile != "cpu" or not CPU_TIME.search(first.source):
        print(f"{path.name}: left as it is (profile {profile}, duration {duration})")
        return False
    where = f"{threads} CPU threads" if threads else "CPU"
    new = CPU_TIME.sub(f"`cpu` profile: {stated(duration)} (measured: {where}, no GPU)",
                       first.source)
    if new != first.source:
        first.source = new
        nbformat.write(nb, path)
    print(f"{path.name}: cpu {stated(duration)} ({duration:.0f} s)")
    return True


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        refresh(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
