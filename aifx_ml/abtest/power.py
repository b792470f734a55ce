"""Split and shadow tests side by side on one simulated stream of requests (power analysis).

The stream: `requests_per_day` requests a day (one pair, so a day is a cluster), every signal
decided. Each day shifts the chance that an answer wins by N(0, day_sd²): answers given on one
day share a market. The challenger (B) gives Production's (A) answer on a share `agreement`
of requests, and then both win or lose together. Otherwise they disagree, and the answers are
opposed: exactly one of them wins (a buy against a sell; the least favourable case for a
paired test, since every disagreement is a ±1 difference). A's win rate is `p_a`; B's is
`p_a + lift`, the lift coming entirely from the disagreements.

On the same stream:
- the split test sees each request answered by one arm, B with probability `split_b`;
- the shadow test sees both answers of every request (`aifx_ml.abtest.paired`).
Both are looked at after every day (every `requests_per_day` requests) through the library's
vectorized paths (`stats.sequential_path`), so what is measured is what decides live tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aifx_ml.abtest.paired import (
    PairedSums,
    accumulate_paired,
    paired_difference,
    paired_sums_from_table,
)
from aifx_ml.abtest.stats import (
    SequentialPath,
    SequentialPlan,
    accumulate,
    difference,
    sequential_path,
    sums_from_table,
)
from aifx_ml.errors import InvalidInputError

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Stream:
    """The simulated traffic and the models' relation (see the module docstring)."""

    agreement: float = 0.8
    lift: float = 0.05
    p_a: float = 0.5
    day_sd: float = 0.10
    requests_per_day: int = 25
    days: int = 400
    split_b: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.agreement < 1:
            raise InvalidInputError(f"agreement {self.agreement} is not in [0, 1)")
        if not 0 < self.split_b < 1:
            raise InvalidInputError(f"split {self.split_b} is not strictly between 0 and 1")
        p_dis, p_agree = self.win_chances()
        if not (0 <= p_dis <= 1 and 0 <= p_agree <= 1):
            raise InvalidInputError(
                f"a lift of {self.lift} from {1 - self.agreement:.0%} disagreements is not "
                f"possible with A winning {self.p_a:.0%}"
            )

    def win_chances(self) -> tuple[float, float]:
        """A's chance to win where the two disagree, and (both) where they agree."""
        disagree = 1.0 - self.agreement
        p_dis = (1.0 - self.lift / disagree) / 2.0  # B wins where A loses: lift = d(1 − 2 p_dis)
        p_agree = (self.p_a - disagree * p_dis) / self.agreement if self.agreement else 0.0
        return p_dis, p_agree


@dataclass(frozen=True)
class Paths:
    """Both tests over the same runs and looks (one look per simulated day)."""

    split: SequentialPath
    shadow: SequentialPath


def draw(
    rng: np.random.Generator, runs: int, stream: Stream
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Whether A's and B's answer won, (runs, days, requests_per_day) each."""
    shape = (runs, stream.days, stream.requests_per_day)
    p_dis, p_agree = stream.win_chances()
    shift = rng.normal(0.0, stream.day_sd, (runs, stream.days, 1))
    agree = rng.random(shape) < stream.agreement
    chance = np.clip(np.where(agree, p_agree, p_dis) + shift, 0.0, 1.0)
    a_wins = rng.random(shape) < chance
    return a_wins, np.where(agree, a_wins, ~a_wins)


def paired_by_day(a_wins: npt.NDArray[np.bool_], b_wins: npt.NDArray[np.bool_]) -> PairedSums:
    """Running paired sums after each day (axis 1): every request gives x_i = (1, w_A, 1, w_B);
    per day Σ x_i and Σ x_i x_iᵀ, one cluster a day."""
    runs, days, per_day = a_wins.shape
    n = np.full((runs, days), float(per_day))
    s_a, s_b = a_wins.sum(-1).astype(np.float64), b_wins.sum(-1).astype(np.float64)
    both = (a_wins & b_wins).sum(-1).astype(np.float64)
    table = np.stack([n, s_a, n, s_b], axis=-1)
    units = np.empty((runs, days, 4, 4))
    rows = [[n, s_a, n, s_b], [s_a, s_a, s_a, both], [n, s_a, n, s_b], [s_b, both, s_b, s_b]]
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            units[..., i, j] = value
    return accumulate_paired(
        paired_sums_from_table(table[:, :, None], units[:, :, None], n[..., None])
    )


def simulate(rng: np.random.Generator, runs: int, stream: Stream, plan: SequentialPlan) -> Paths:
    """`runs` independent streams of `stream.days` days, both tests run on each."""
    a_wins, b_wins = draw(rng, runs, stream)
    shadow = paired_by_day(a_wins, b_wins)
    c = shadow.clusters.first
    shadow_path = sequential_path(paired_difference(shadow), c[..., 0], c[..., 2], plan)

    # Split: each request answered by its routed arm only.
    to_b = rng.random(a_wins.shape) < stream.split_b
    na_day = (~to_b).sum(-1).astype(np.float64)
    nb_day = to_b.sum(-1).astype(np.float64)
    sa_day = (a_wins & ~to_b).sum(-1).astype(np.float64)
    sb_day = (b_wins & to_b).sum(-1).astype(np.float64)
    split_sums = accumulate(
        sums_from_table(
            np.stack([na_day, sa_day, nb_day, sb_day], axis=-1)[:, :, None],
            np.stack([sa_day, sb_day], axis=-1)[:, :, None],
        )
    )
    split_first = split_sums.first
    split_path = sequential_path(
        difference(split_sums), split_first[..., 0], split_first[..., 2], plan
    )
    return Paths(split_path, shadow_path)


def power_by_day(path: SequentialPath, days: int) -> F64:
    """Share of runs that have declared B the winner by the end of each day."""
    by = (path.winner == 1)[:, None] & (path.decided_at[:, None] <= np.arange(days)[None, :])
    return np.asarray(by.mean(axis=0))


def days_to_power(power: F64, target: float = 0.8) -> int | None:
    """The first day (1-based) by which the share of runs declaring B reaches `target`."""
    reached = np.flatnonzero(power >= target)
    return int(reached[0]) + 1 if reached.size else None
