# SPDX-License-Identifier: Apache-2.0
"""Medians, ratios and markdown tables for the reports."""

import statistics

ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def median(xs):
    """Median of the values that are not None; None if there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    """a / b, or None if either is None or b is 0."""
    return None if a is None or b is None or b == 0 else a / b


def fmt_x(r):
    """A ratio as 0.93x, or n/a."""
    return "n/a" if r is None else f"{r:.2f}x"


def verdict(r, target, above=True):
    """yes / **no** for a figure against its target (at least target, or below it if not above)."""
    if r is None:
        return "n/a"
    ok = r >= target if above else r < target
    return "yes" if ok else "**no**"


def median_range(xs, digits=0):
    """Median with (min–max) of the values that are not None: 1,234 (1,100–1,300); n/a if none."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return f"{m:,.{digits}f}"
    return f"{m:,.{digits}f} ({min(xs):,.{digits}f}–{max(xs):,.{digits}f})"


def fmt_rate(x):
    """An operation rate: one decimal below 10, none above."""
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def min_max(xs, digits=None):
    """min–max of xs (just the value if there is one), by fmt_rate or with digits decimals."""
    f = fmt_rate if digits is None else (lambda x: f"{x:.{digits}f}")
    return f"{f(min(xs))}–{f(max(xs))}" if len(xs) > 1 else f(xs[0])


def header(columns):
    """The two header lines of a markdown table; columns are (title, align), align l, r or c."""
    return [row(title for title, _ in columns), row(ALIGN[a] for _, a in columns)]


def row(cells):
    """One markdown table row: | a | b |."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def breakdown(counts, per):
    """"2.50: file_stat 1.50, loc_lookup 1.00": a total per unit and its parts, largest first."""
    if not counts or not per:
        return "0"
    parts = sorted(counts.items(), key=lambda kv: -kv[1])
    return f"{sum(counts.values()) / per:.2f}: " + ", ".join(f"{k} {v / per:.2f}" for k, v in parts)
