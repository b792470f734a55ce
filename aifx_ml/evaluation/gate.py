"""The offline release gate: may a candidate replace the Production model?

A comparison of numbers only — scores of the candidate, the Production model and the
baselines on one holdout that neither model trained on. It returns a decision with its
numbers; it never touches MLflow or the database (`registry.promotion` acts on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aifx_ml.evaluation.metrics import HoldoutMetrics, versus_baselines

DEFAULT_MARGIN = 0.005  # accuracy the candidate must gain over Production
DEFAULT_MIN_SAMPLES = 30


@dataclass(frozen=True)
class GateDecision:
    """Whether the candidate passes, why not, and every number the decision rests on."""

    passed: bool
    reasons: tuple[str, ...]
    candidate: HoldoutMetrics
    production: HoldoutMetrics | None
    baselines: dict[str, HoldoutMetrics]
    margin: float
    min_samples: int
    holdout: dict[str, Any]  # where the holdout lies (start, end, samples)

    def rows(self, candidate: str, production: str | None) -> list[tuple[str, HoldoutMetrics]]:
        """(label, metrics) for a table: candidate, Production, each baseline."""
        out = [(f"{candidate} (candidate)", self.candidate)]
        if self.production is not None and production is not None:
            out.append((f"{production} (Production)", self.production))
        out += [(f"baseline: {name}", m) for name, m in self.baselines.items()]
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: stored with the stage change so the history says why."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "margin": self.margin,
            "min_samples": self.min_samples,
            "holdout": self.holdout,
            "candidate": self.candidate.as_dict(),
            "production": self.production.as_dict() if self.production else None,
            "baselines": {k: v.as_dict() for k, v in self.baselines.items()},
        }


def promotion_gate(
    candidate: HoldoutMetrics,
    production: HoldoutMetrics | None,
    baselines: dict[str, HoldoutMetrics],
    *,
    margin: float = DEFAULT_MARGIN,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    holdout: dict[str, Any] | None = None,
) -> GateDecision:
    """Pass when the holdout is large enough, the candidate beats the best baseline, and
    (when there is a Production model) its accuracy is at least `margin` above Production's.

    The first model ever (no Production) needs only the baselines.
    """
    reasons = []
    if candidate.samples < min_samples:
        reasons.append(
            f"only {candidate.samples} holdout samples that neither model trained on "
            f"(need {min_samples})"
        )
    versus = versus_baselines(candidate, baselines)
    if not versus.beats_baseline:
        best = baselines[versus.best_baseline]
        reasons.append(
            f"does not beat the {versus.best_baseline} baseline (accuracy "
            f"{candidate.accuracy:.4f} vs {best.accuracy:.4f}, log-loss "
            f"{candidate.log_loss:.4f} vs {min(b.log_loss for b in baselines.values()):.4f})"
        )
    # Accuracies are counts over samples: compare the gain with a hair of tolerance, or
    # 0.565 - 0.560 would fall short of a 0.005 margin by a rounding error.
    if production is not None and not candidate.accuracy - production.accuracy >= margin - 1e-9:
        reasons.append(
            f"accuracy {candidate.accuracy:.4f} is not {margin:.4f} above Production's "
            f"{production.accuracy:.4f}"
        )
    return GateDecision(
        passed=not reasons,
        reasons=tuple(reasons),
        candidate=candidate,
        production=production,
        baselines=baselines,
        margin=margin,
        min_samples=min_samples,
        holdout=holdout or {},
    )
