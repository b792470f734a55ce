"""Statistics of shadow (paired) tests: both versions answer every request, one of them unseen.

In a shadow test Production (A) answers each request as usual and the challenger (B) answers
the same input at the same moment; B's answer is only recorded. Once labeled, every request
gives an outcome of each. The quantity is the one a split test estimates (win rate of B over
its decided signals minus A's over its own, `aifx_ml.abtest.stats`), but both arms now see
the same markets, so it is judged on the per-request differences. A request's influence on
θ̂ is

    u_i = d_B,i (w_B,i − p̂_B) / N_B − d_A,i (w_A,i − p̂_A) / N_A

(d: the signal is decided, w: it won). Where the two models give the same answer (most
requests), their outcomes are the same and the two terms nearly cancel: that is where the
power comes from. The variance is cluster-robust over pair|day clusters, V = G/(G−1) Σ_c u_c²,
floored at the requests-independent n/(n−1) Σ_i u_i² (which keeps the pairing, unlike the
split test's floor). The decision is the split test's (`stats.decide`): the same mixture SPRT
with an always-valid p-value, the same pnl guardrail; there is no split, so no SRM check.
Vectorized like `stats`: one live test and thousands of simulated ones share the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from aifx_ml.abtest.stats import (
    DECIDED,
    LABELED,
    ClusterSums,
    Difference,
    SequentialDecision,
    SequentialPlan,
    checked_outcomes,
    cr1,
    decide,
    floored_variance,
    influence_weights,
    quadratic,
    sums_from_table,
)
from aifx_ml.errors import InvalidInputError

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PairedSums:
    """Sufficient statistics of a paired test, for any leading shape: the cluster sums of
    x = (n_a, s_a, n_b, s_b) (`stats.ClusterSums`), plus over requests Σ_i x_i x_iᵀ
    (`units`, (..., 4, 4)) and the number of requests with an observation (`requests`).
    Sums add up over disjoint sets of clusters."""

    clusters: ClusterSums
    units: F64
    requests: F64


def paired_sums(x: npt.ArrayLike, cluster: npt.ArrayLike) -> PairedSums:
    """PairedSums of requests given as rows x_i = (n_a, s_a, n_b, s_b) (each arm's count,
    0 or 1, and value) with cluster codes >= 0."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, 4)
    codes = np.asarray(cluster, dtype=np.int64)
    g = int(codes.max()) + 1 if codes.size else 0
    table = np.stack([np.bincount(codes, rows[:, k], minlength=g) for k in range(4)], axis=-1)
    squares = np.stack([np.bincount(codes, rows[:, k] ** 2, minlength=g) for k in (1, 3)], axis=-1)
    has = (rows[:, 0] > 0) | (rows[:, 2] > 0)
    return PairedSums(
        sums_from_table(table, squares),
        np.einsum("ni,nj->ij", rows, rows),
        np.asarray(float(has.sum())),
    )


def paired_sums_from_table(
    table: npt.ArrayLike, units: npt.ArrayLike, requests: npt.ArrayLike
) -> PairedSums:
    """Reduce per-cluster rows over the G axis: cluster totals (..., G, 4), each cluster's
    Σ_i x_i x_iᵀ over its requests (..., G, 4, 4) and its request count (..., G)."""
    t = np.asarray(table, dtype=np.float64)
    u = np.asarray(units, dtype=np.float64)
    squares = np.stack([u[..., 1, 1], u[..., 3, 3]], axis=-1)
    return PairedSums(
        sums_from_table(t, squares),
        u.sum(axis=-3),
        np.asarray(requests, dtype=np.float64).sum(axis=-1),
    )


def accumulate_paired(sums: PairedSums) -> PairedSums:
    """Running totals along the last leading axis (looks), for batches of distinct clusters."""
    c = sums.clusters
    return PairedSums(
        ClusterSums(
            np.cumsum(c.first, -2),
            np.cumsum(c.second, -3),
            np.cumsum(c.squares, -2),
            np.cumsum(c.clusters, -2),
        ),
        np.cumsum(sums.units, -3),
        np.cumsum(sums.requests, -1),
    )


def paired_difference(sums: PairedSums) -> Difference:
    """θ̂ = mean_B − mean_A with the CR1 variance of the per-request differences, floored at
    their requests-independent variance n/(n−1) Σ_i u_i²."""
    c = sums.clusters
    n_a, s_a, n_b, s_b = (c.first[..., k] for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = s_b / n_b - s_a / n_a
        w = influence_weights(c)
        n = sums.requests
        iid = np.where(n > 1, n / (n - 1) * quadratic(w, sums.units), np.nan)
    cluster = cr1(c.clusters[..., 2], quadratic(w, c.second))
    return Difference(theta, floored_variance(theta, cluster, iid), cluster, iid)


def evaluate_paired(
    frame: pd.DataFrame,
    plan: SequentialPlan | None = None,
    *,
    previous_p: float = 1.0,
    expired: bool = False,
) -> SequentialDecision:
    """One look at a shadow test: every request it mirrored, one row per arm's answer.

    Columns as for `stats.evaluate` (variant, outcome, pnl, cluster) plus `request`, the same
    value on A's row and B's row of one request (the served signal's id). A request whose
    other answer is missing (not recorded yet) still counts for the arm it has. Order: the
    mixture SPRT on the win rate ('winner', or 'guardrail' when the winner's mean pnl is
    clearly worse), then the maximum sample or duration ('inconclusive').
    """
    plan = plan or SequentialPlan()
    wins, pnls = paired_outcome_sums(frame)
    n_a, n_b = int(wins.clusters.first[0]), int(wins.clusters.first[2])
    return decide(
        paired_difference(wins), n_a, n_b, lambda: paired_difference(pnls), plan,
        previous_p=previous_p, expired=expired,
    )  # fmt: skip


def paired_outcome_sums(frame: pd.DataFrame) -> tuple[PairedSums, PairedSums]:
    """The paired sums of wins over decided signals and of pnl over labeled ones."""
    variant, outcome, cluster, pnl = checked_outcomes(
        frame, "shadow test outcomes", extra=("request",)
    )
    request = pd.factorize(frame["request"])[0].astype(np.int64)
    if (request < 0).any():
        raise InvalidInputError("every answer of a shadow test needs its request")
    if pd.DataFrame({"r": request, "v": variant}).duplicated().any():
        raise InvalidInputError("a request of a shadow test has two answers from one arm")
    # A request's cluster is its first row's: both answers are given at the same moment.
    per_request = np.full(int(request.max()) + 1 if request.size else 0, -1, dtype=np.int64)
    per_request[request[::-1]] = cluster[::-1]
    is_b = variant == "b"
    decided = np.isin(outcome, DECIDED)
    labeled = np.isin(outcome, LABELED) & np.isfinite(pnl)
    won = (outcome == "win").astype(np.float64)
    return (
        _sums(request, is_b, decided, won, per_request),
        _sums(request, is_b, labeled, np.where(labeled, pnl, 0.0), per_request),
    )


def _sums(
    request: npt.NDArray[np.int64],
    is_b: npt.NDArray[np.bool_],
    counted: npt.NDArray[np.bool_],
    value: F64,
    cluster_of: npt.NDArray[np.int64],
) -> PairedSums:
    """Per-request x_i = (n_a, s_a, n_b, s_b) of the counted rows, then their paired sums."""
    r = len(cluster_of)
    a, b = counted & ~is_b, counted & is_b
    x = np.stack(
        [
            np.bincount(request, a.astype(np.float64), minlength=r),
            np.bincount(request, np.where(a, value, 0.0), minlength=r),
            np.bincount(request, b.astype(np.float64), minlength=r),
            np.bincount(request, np.where(b, value, 0.0), minlength=r),
        ],
        axis=-1,
    )
    return paired_sums(x, cluster_of)
