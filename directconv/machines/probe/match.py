"""Which known machine description a probed host matches, and why or why not, in words.

A candidate matches when every fact the model's register and L1/L2 blocking reads agrees: ISA, vector width,
register count, vendor, FMA latency and throughput, and the L1 and L2 sizes. L3 size and core count differ between
SKUs of one core design (and a VM shows whatever slice it got), so they are reported but never block a match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from directconv.machines.machine import Machine

L_FMA_TOLERANCE = 0.5  # cycles: latencies are whole cycles, so any other integer is a different core
N_FMA_TOLERANCE = 0.25  # FMAs per cycle: half a pipe is the finest real difference
CACHE_TOLERANCE = 0.10  # relative: sysfs sizes are exact, documents round


def _num(x: float) -> str:
    return f"{x:g}"


def _kib(size_kib: float | None) -> str:
    return "none" if size_kib is None else f"{_num(size_kib)} KiB"


@dataclass(frozen=True)
class Comparison:
    """How one candidate description compares with the host's."""

    candidate: Machine
    same: tuple[str, ...]  # facts that agree, in words ("isa", "L2 512 KiB")
    differences: tuple[str, ...]  # facts that block a match, in words ("l_fma 5 vs 4 here")
    aside: tuple[str, ...]  # facts that differ without blocking a match ("L3 16384 vs 32768 KiB here")

    @property
    def matches(self) -> bool:
        return not self.differences

    def key(self) -> tuple[int, int, int]:
        """Sort key, best first: fewest blocking differences, then most agreements, then fewest asides."""
        return len(self.differences), -len(self.same), len(self.aside)


def compare(host: Machine, candidate: Machine) -> Comparison:
    """Compare `candidate` with the `host` description, fact by fact."""
    same: list[str] = []
    differences: list[str] = []
    aside: list[str] = []

    def exact(name: str, theirs: object, ours: object) -> None:
        if theirs == ours:
            same.append(name)
        else:
            differences.append(f"{name} {theirs} vs {ours} here")

    exact("isa", candidate.isa, host.isa)
    exact("n_vec", candidate.n_vec, host.n_vec)
    exact("n_reg", candidate.n_reg, host.n_reg)
    exact("vendor", candidate.vendor.lower(), host.vendor.lower())
    for name, theirs, ours, tolerance in (
        ("n_fma", candidate.n_fma, host.n_fma, N_FMA_TOLERANCE),
        ("l_fma", candidate.l_fma, host.l_fma, L_FMA_TOLERANCE),
    ):
        if abs(theirs - ours) <= tolerance:
            same.append(name)
        else:
            differences.append(f"{name} {_num(theirs)} vs {_num(ours)} here")
    for level in (1, 2, 3):
        theirs_c, ours_c = candidate.cache(level), host.cache(level)
        a = theirs_c.size_kib if theirs_c else None
        b = ours_c.size_kib if ours_c else None
        alike = a is not None and b is not None and abs(a - b) <= CACHE_TOLERANCE * max(a, b)
        if a is None and b is None:
            continue
        if alike:
            same.append(f"L{level} {_kib(a)}")
        elif level <= 2:
            differences.append(f"L{level} {_kib(a)} vs {_kib(b)} here")
        else:
            aside.append(f"L{level} {_kib(a)} vs {_kib(b)} here")
    if candidate.cores != host.cores:
        aside.append(f"{candidate.cores} cores vs {host.cores} here")
    return Comparison(candidate, tuple(same), tuple(differences), tuple(aside))


@dataclass(frozen=True)
class MatchResult:
    """The best candidate for a host (None when there were no candidates), and every comparison, best first."""

    best: Comparison | None
    ranked: tuple[Comparison, ...]

    @property
    def matched(self) -> Machine | None:
        return self.best.candidate if self.best is not None and self.best.matches else None

    def explain(self) -> str:
        """One line for the user: the match and why, or why no candidate matches."""
        if self.best is None:
            return "no bundled machine to compare with"
        b = self.best
        if b.matches:
            why = f"same {', '.join(b.same)}"
            if b.aside:
                why += f"; differs in {', '.join(b.aside)}"
            return f"closest bundled machine: {b.candidate.id} ({why})"
        return f"no bundled machine matches: closest is {b.candidate.id}, which differs in {', '.join(b.differences)}"


def why_not(host: Machine, candidate: Machine) -> str:
    """Why `candidate` is or is not a match for `host`, in one sentence (archspec's `why_not`, for machines)."""
    c = compare(host, candidate)
    if c.matches:
        return f"{candidate.id} matches: same {', '.join(c.same)}"
    return f"{candidate.id} differs in {', '.join(c.differences)}"


def best_match(host: Machine, candidates: Iterable[Machine]) -> MatchResult:
    """Rank `candidates` against `host` (ties keep the candidates' order) and return the best with the ranking."""
    ranked: Sequence[Comparison] = sorted((compare(host, c) for c in candidates), key=Comparison.key)
    return MatchResult(ranked[0] if ranked else None, tuple(ranked))
