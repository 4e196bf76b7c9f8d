"""The order a DJ would play a playlist in: keys that mix (the Camelot wheel), tempo steps of a
few percent, and an energy arc over the set.

A set's cost is the sum of its steps' costs (key and tempo, from one track to the next) and of
each track's distance from the arc at its place. The energy arc makes the cost depend on where a
track stands, not only on its neighbours, so this is not a travelling-salesman tour: the search
is simulated annealing over whole orders (swapping two tracks, reversing a run of them), from
the order the arc alone would choose. It is seeded, so the same playlist gives the same order.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.key import compatible, key_relation
from analysis.track import TrackSummary

# A step within this tempo ratio is ramped over a transition without anyone hearing it; beyond
# it the change is deliberate and must earn its place.
TEMPO_STEP = 0.03
KEY_CLASH = 1.5  # a clash costs as much as a 7.5 % tempo jump
ARC_WEIGHT = 3.0
ARC_PEAK = 0.7  # where in the set the energy peaks
ARC_END = 0.6  # the energy the set comes down to at its end (of the peak's 1.0)
MAX_RUN = 24  # the longest run of tracks one move reverses


def step_cost(a: TrackSummary, b: TrackSummary) -> float:
    """What playing ``b`` after ``a`` costs: 0 for the same key at the same tempo."""
    if compatible(a.key_index, b.key_index):
        key = 0.0 if a.key_index == b.key_index else 0.2
    else:
        key = KEY_CLASH
    step = abs(math.log(b.bpm / a.bpm))
    tempo = 0.3 * (step / TEMPO_STEP) ** 2 if step <= TEMPO_STEP else \
        0.3 + (step - TEMPO_STEP) / TEMPO_STEP
    return key + tempo


def energy(tracks: list[TrackSummary]) -> np.ndarray:
    """Each track's energy in the playlist, 0 (the calmest) to 1: by tempo, by how loud it was
    mastered, and by the share of it in full drops, each ranked within the playlist."""
    if len(tracks) < 2:
        return np.full(len(tracks), 0.5)
    traits = np.array([[t.bpm, t.loudness_lufs if math.isfinite(t.loudness_lufs) else -70.0,
                        t.drop_share] for t in tracks])
    ranks = traits.argsort(axis=0).argsort(axis=0) / (len(tracks) - 1)
    level = ranks.mean(axis=1)
    return (level - level.min()) / max(level.max() - level.min(), 1e-9)


def arc(n: int) -> np.ndarray:
    """The energy the set should have at each of ``n`` places: rising to a peak, then easing."""
    if n < 2:
        return np.full(n, 0.5)
    x = np.linspace(0.0, 1.0, n)
    return np.where(x <= ARC_PEAK, x / ARC_PEAK,
                    1.0 - (1.0 - ARC_END) * (x - ARC_PEAK) / (1.0 - ARC_PEAK))


def smart_order(tracks: list[TrackSummary], fixed: tuple[int, ...] = (), seed: int = 0,
                moves: int = 40_000) -> list[int]:
    """An order of all ``tracks`` (indices) that starts with ``fixed`` (those already played)
    and minimises the set's cost, after ``moves`` tries (fewer for short lists)."""
    n = len(tracks)
    rest = [i for i in range(n) if i not in fixed]
    if len(rest) < 2:
        return [*fixed, *rest]
    # Plain lists: the moves are scalar work, where numpy's per-call cost would dominate.
    cost = [[step_cost(a, b) for b in tracks] for a in tracks]
    level = energy(tracks)
    target = arc(n)[len(fixed):]
    place = [[ARC_WEIGHT * (level[t] - target[p]) ** 2 for p in range(len(rest))]
             for t in range(n)]  # place[t][p]: track t at free place p
    # Start from the arc alone: the calmest free track at the calmest free place.
    order = [0] * len(rest)
    for p, t in zip(np.argsort(target, kind="stable"),
                    np.array(rest)[np.argsort(level[rest], kind="stable")]):
        order[int(p)] = int(t)
    prev = fixed[-1] if fixed else None
    m = len(order)

    def step(p: int, o: list[int]) -> float:  # the step into place p
        if p == 0:
            return 0.0 if prev is None else cost[prev][o[0]]
        return cost[o[p - 1]][o[p]] if p < m else 0.0

    rng = np.random.default_rng(seed)
    tries = min(moves, 200 * m * m)
    pairs = rng.integers(0, m, size=(tries, 2))
    accept = rng.random(tries)
    current = sum(step(p, order) for p in range(m)) + sum(place[t][p] for p, t in
                                                           enumerate(order))
    best, best_cost = order[:], current
    t0, t1 = 1.0, 0.002
    for k in range(tries):
        i, j = sorted(pairs[k])
        if i == j:
            continue
        j = min(j, i + MAX_RUN)
        # Only the steps into i and out of j, the places i..j and, for a swap, the steps
        # around both places change (steps cost the same both ways).
        touched = {i, i + 1, j, j + 1} if k % 2 else {i, j + 1}
        before = sum(step(p, order) for p in touched) + \
            sum(place[order[p]][p] for p in range(i, j + 1))
        candidate = order[:]
        if k % 2:
            candidate[i], candidate[j] = candidate[j], candidate[i]
        else:
            candidate[i:j + 1] = candidate[i:j + 1][::-1]
        after = sum(step(p, candidate) for p in touched) + \
            sum(place[candidate[p]][p] for p in range(i, j + 1))
        delta = after - before
        temperature = t0 * (t1 / t0) ** (k / tries)
        if delta <= 0 or accept[k] < math.exp(-delta / temperature):
            order, current = candidate, current + delta
            if current < best_cost - 1e-12:
                best, best_cost = order[:], current
    return [*fixed, *best]


def set_cost(tracks: list[TrackSummary], order: list[int]) -> float:
    """The cost ``smart_order`` minimises, of any order of all the tracks."""
    level, target = energy(tracks), arc(len(tracks))
    steps = sum(step_cost(tracks[a], tracks[b]) for a, b in zip(order, order[1:]))
    return float(steps + ARC_WEIGHT * sum((level[t] - target[p]) ** 2
                                          for p, t in enumerate(order)))


def describe_step(a: TrackSummary, b: TrackSummary) -> str:
    """How a DJ would call the step from ``a`` to ``b``: key relation and tempo change."""
    change = 100.0 * (b.bpm / a.bpm - 1.0)
    tempo = f"{change:+.1f} %" + (" (tempo change)" if abs(change) > 100 * TEMPO_STEP else "")
    return f"{key_relation(a.key_index, b.key_index)}, {tempo}"
