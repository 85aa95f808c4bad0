"""Statistics of the study: means over seeds with a t-interval, paired differences.

A run's score depends on its seed (initialisation, batch order, dropout, which posts keep
their label); the seeds are a small sample of that distribution. :func:`mean_ci` gives the
mean over seeds and its 95% confidence interval (Student's t with n - 1 degrees of
freedom: few seeds, unknown spread). :func:`paired` compares two variants run with the
*same* seeds: the per-seed difference removes what the seed does to both alike, and its
t-interval says whether the difference is told apart from 0. A comparison whose interval
contains 0 is "not separated", never a win.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float     # NaN where it is undefined (fewer than 2 values)
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        """True where the interval holds ``value`` (an undefined interval holds anything)."""
        return not (self.low > value or self.high < value)

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.3f} (n = {self.n}, no interval)"
        return f"{self.mean:.3f} ± {self.half_width:.3f} (n = {self.n})"


def mean_ci(values, level: float = 0.95) -> Interval:
    """Mean of ``values`` and its ``level`` t-interval (NaN bounds for n < 2)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        raise ValueError("no values")
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, len(x))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def verdict(diff: Interval, a: str = "A", b: str = "B") -> str:
    """How a difference ``a - b`` reads: which is better, or "not separated"."""
    if math.isnan(diff.low) or diff.contains(0.0):
        return "not separated"
    return f"{a} better" if diff.mean > 0 else f"{b} better"


def paired(frame: pd.DataFrame, column: str, a: dict, b: dict, on: str = "seed",
           level: float = 0.95) -> tuple[Interval, pd.DataFrame]:
    """The difference ``a - b`` of ``column`` over the values of ``on`` both have.

    ``a`` and ``b`` select rows by equality (``{"variant": "full"}``); each must hold at
    most one row per value of ``on``. Returns the interval of the mean difference and the
    per-``on`` table (columns ``a``, ``b``, ``diff``).
    """
    def pick(sel: dict) -> pd.Series:
        rows = frame
        for key, value in sel.items():
            rows = rows[rows[key] == value]
        if rows[on].duplicated().any():
            raise ValueError(f"{sel}: more than one row per {on}")
        return rows.set_index(on)[column]

    pairs = pd.concat({"a": pick(a), "b": pick(b)}, axis=1).dropna()
    if pairs.empty:
        raise ValueError(f"{a} and {b} share no {on}")
    pairs["diff"] = pairs["a"] - pairs["b"]
    return mean_ci(pairs["diff"], level), pairs


def summary(frame: pd.DataFrame, by: list[str], column: str, level: float = 0.95
            ) -> pd.DataFrame:
    """Mean, interval bounds, half-width and n of ``column`` per group of ``by``."""
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ci = mean_ci(group[column], level)
        rows.append({**dict(zip(by, key, strict=True)), **asdict(ci),
                     "half_width": ci.half_width})
    return pd.DataFrame(rows)
