"""The offline release gate: enough holdout samples, beat the best baseline, and (when there is
one) beat the Production model by the margin. Every failing rule gives its own reason.

All metrics are made by hand; the expected decisions follow from the rules in the brief, not
from calling the code under test.
"""

from __future__ import annotations

import json
import math

import pytest

from aifx_ml.evaluation.gate import DEFAULT_MARGIN, DEFAULT_MIN_SAMPLES, promotion_gate
from aifx_ml.evaluation.metrics import HoldoutMetrics


def metrics(accuracy: float, log_loss: float = 0.66, samples: int = 200) -> HoldoutMetrics:
    """Holdout metrics with the two numbers the gate reads; the rest are plausible fillers."""
    return HoldoutMetrics(
        samples=samples, accuracy=accuracy, auc=0.61, log_loss=log_loss, brier=0.23, up_rate=0.52
    )


def baselines(
    majority: tuple[float, float] = (0.52, 0.69), persistence: tuple[float, float] = (0.54, 0.70)
) -> dict[str, HoldoutMetrics]:
    """(accuracy, log-loss) per baseline. By default persistence is the best (more accurate)
    and majority has the lowest log-loss, so the two halves of rule (b) meet different
    baselines."""
    return {"majority": metrics(*majority), "persistence": metrics(*persistence)}


# 1. The first model ever: samples and baselines only.


def test_first_model_passes_on_samples_and_baselines_alone() -> None:
    decision = promotion_gate(metrics(0.545, 0.69), None, baselines())
    assert decision.passed
    assert decision.reasons == ()
    assert decision.production is None
    assert decision.margin == DEFAULT_MARGIN
    assert decision.min_samples == DEFAULT_MIN_SAMPLES
    assert decision.holdout == {}


def test_first_model_is_not_held_to_a_production_accuracy() -> None:
    candidate = metrics(0.545, 0.69)
    assert promotion_gate(candidate, None, baselines()).passed
    # The same candidate against a Production model it does not beat is refused.
    refused = promotion_gate(candidate, metrics(0.545), baselines())
    assert not refused.passed
    assert len(refused.reasons) == 1
    assert "Production" in refused.reasons[0]


# 2. Rule (a): enough holdout samples.


def test_exactly_min_samples_passes_and_one_fewer_is_refused() -> None:
    at = promotion_gate(metrics(0.6, samples=DEFAULT_MIN_SAMPLES), None, baselines())
    assert at.passed
    below = promotion_gate(metrics(0.6, samples=DEFAULT_MIN_SAMPLES - 1), None, baselines())
    assert not below.passed
    assert below.reasons == (
        f"only {DEFAULT_MIN_SAMPLES - 1} holdout samples that neither model trained on "
        f"(need {DEFAULT_MIN_SAMPLES})",
    )


def test_min_samples_is_a_parameter() -> None:
    candidate = metrics(0.6, samples=80)
    assert promotion_gate(candidate, None, baselines(), min_samples=80).passed
    refused = promotion_gate(candidate, None, baselines(), min_samples=81)
    assert not refused.passed
    assert refused.min_samples == 81
    assert "only 80 holdout samples" in refused.reasons[0]
    assert "(need 81)" in refused.reasons[0]


# 3. Rule (b): beat the best baseline.


def test_equal_accuracy_to_the_best_baseline_is_refused() -> None:
    decision = promotion_gate(metrics(0.54, 0.60), None, baselines())
    assert not decision.passed
    (reason,) = decision.reasons
    assert "persistence baseline" in reason
    assert "accuracy 0.5400 vs 0.5400" in reason
    # The log-loss half was met: the reason still names both numbers it compared.
    assert "log-loss 0.6000 vs 0.6900" in reason


def test_higher_accuracy_but_worse_log_loss_than_any_baseline_is_refused() -> None:
    # More accurate than every baseline, log-loss better than persistence's (0.70) but worse
    # than majority's (0.69): overconfident, refused.
    decision = promotion_gate(metrics(0.62, 0.695), None, baselines())
    assert not decision.passed
    (reason,) = decision.reasons
    assert "does not beat the persistence baseline" in reason
    assert "accuracy 0.6200 vs 0.5400" in reason
    assert "log-loss 0.6950 vs 0.6900" in reason


def test_log_loss_equal_to_the_lowest_baseline_log_loss_passes() -> None:
    assert promotion_gate(metrics(0.541, 0.69), None, baselines()).passed
    assert not promotion_gate(metrics(0.541, 0.6901), None, baselines()).passed


def test_the_best_baseline_is_the_most_accurate_one_ties_broken_by_log_loss() -> None:
    # Both baselines 0.55 accurate: majority (lower log-loss) is the one named.
    tied = baselines(majority=(0.55, 0.68), persistence=(0.55, 0.70))
    decision = promotion_gate(metrics(0.55, 0.60), None, tied)
    assert not decision.passed
    assert "does not beat the majority baseline" in decision.reasons[0]
    # A less accurate majority baseline is not the best, whatever its log-loss.
    decision = promotion_gate(metrics(0.50, 0.60), None, baselines(majority=(0.53, 0.60)))
    assert "does not beat the persistence baseline" in decision.reasons[0]
    assert "accuracy 0.5000 vs 0.5400" in decision.reasons[0]


def test_a_single_baseline_is_enough() -> None:
    only = {"majority": metrics(0.51, 0.69)}
    assert promotion_gate(metrics(0.52, 0.69), None, only).passed
    assert not promotion_gate(metrics(0.51, 0.69), None, only).passed


# 4. Rule (c): beat Production by the margin.


def test_exactly_the_margin_over_production_passes() -> None:
    # 0.55 + 0.005 is 0.555 in binary floating point too.
    assert promotion_gate(metrics(0.555), metrics(0.55), baselines()).passed
    # Numbers exact in binary: no rounding can decide this one.
    assert promotion_gate(metrics(0.75), metrics(0.5), baselines(), margin=0.25).passed


def test_exactly_the_margin_over_production_passes_for_accuracies_counted_out_of_200() -> None:
    # One more right answer out of 200 is exactly the default margin, 1/200 = 0.005.
    decision = promotion_gate(metrics(113 / 200), metrics(112 / 200), baselines())
    assert decision.reasons == ()
    assert decision.passed


def test_just_below_the_margin_is_refused_with_the_numbers() -> None:
    decision = promotion_gate(metrics(0.5549), metrics(0.55), baselines())
    assert not decision.passed
    assert decision.reasons == ("accuracy 0.5549 is not 0.0050 above Production's 0.5500",)


def test_the_margin_is_a_parameter() -> None:
    candidate, production = metrics(0.585), metrics(0.56)
    assert promotion_gate(candidate, production, baselines(), margin=0.02).passed
    refused = promotion_gate(candidate, production, baselines(), margin=0.03)
    assert not refused.passed
    assert refused.margin == 0.03
    assert refused.reasons == ("accuracy 0.5850 is not 0.0300 above Production's 0.5600",)
    # With no margin, matching Production is enough; being worse is not.
    assert promotion_gate(metrics(0.56), production, baselines(), margin=0.0).passed
    assert not promotion_gate(metrics(0.559), production, baselines(), margin=0.0).passed


# 5. Reasons: one per failing rule, each with its numbers.


def test_every_failing_rule_gives_its_own_reason_in_rule_order() -> None:
    candidate = metrics(0.53, 0.71, samples=12)
    decision = promotion_gate(candidate, metrics(0.60), baselines(), min_samples=50)
    assert not decision.passed
    assert decision.reasons == (
        "only 12 holdout samples that neither model trained on (need 50)",
        "does not beat the persistence baseline (accuracy 0.5300 vs 0.5400, "
        "log-loss 0.7100 vs 0.6900)",
        "accuracy 0.5300 is not 0.0050 above Production's 0.6000",
    )


@pytest.mark.parametrize(
    ("candidate", "production", "failing"),
    [
        (metrics(0.60, samples=10), metrics(0.57), "only 10"),
        (metrics(0.53), metrics(0.50), "does not beat"),
        (metrics(0.57), metrics(0.57), "above Production's"),
    ],
)
def test_a_single_failing_rule_gives_a_single_reason(
    candidate: HoldoutMetrics, production: HoldoutMetrics, failing: str
) -> None:
    decision = promotion_gate(candidate, production, baselines())
    assert not decision.passed
    assert len(decision.reasons) == 1
    assert failing in decision.reasons[0]


def test_a_candidate_with_no_holdout_at_all_is_refused_by_every_rule() -> None:
    nan = float("nan")
    empty = HoldoutMetrics(0, nan, nan, nan, nan, nan)  # what holdout_metrics gives for none
    decision = promotion_gate(empty, metrics(0.55), baselines())
    assert not decision.passed
    assert len(decision.reasons) == 3
    assert "only 0 holdout samples" in decision.reasons[0]


# 6. Rows for a table, and the stored form.


def test_rows_list_candidate_production_then_each_baseline() -> None:
    candidate, production, bases = metrics(0.6), metrics(0.55), baselines()
    decision = promotion_gate(candidate, production, bases)
    assert decision.rows("v7", "v5") == [
        ("v7 (candidate)", candidate),
        ("v5 (Production)", production),
        ("baseline: majority", bases["majority"]),
        ("baseline: persistence", bases["persistence"]),
    ]


def test_rows_of_a_first_model_have_no_production_row() -> None:
    candidate, bases = metrics(0.6), baselines()
    decision = promotion_gate(candidate, None, bases)
    assert decision.rows("v1", None) == [
        ("v1 (candidate)", candidate),
        ("baseline: majority", bases["majority"]),
        ("baseline: persistence", bases["persistence"]),
    ]


def test_as_dict_is_json_and_round_trips_every_number() -> None:
    candidate, production, bases = metrics(0.6, 0.65), metrics(0.58, 0.67), baselines()
    holdout = {"start": "2026-02-01T00:00:00+00:00", "end": "2026-03-01T00:00:00+00:00"}
    decision = promotion_gate(
        candidate, production, bases, margin=0.03, min_samples=40, holdout=holdout
    )
    assert not decision.passed
    stored = json.loads(json.dumps(decision.as_dict(), allow_nan=False))
    assert stored["passed"] is False
    assert stored["reasons"] == list(decision.reasons)
    assert stored["margin"] == 0.03
    assert stored["min_samples"] == 40
    assert stored["holdout"] == holdout
    assert HoldoutMetrics(**stored["candidate"]) == candidate
    assert HoldoutMetrics(**stored["production"]) == production
    assert {k: HoldoutMetrics(**v) for k, v in stored["baselines"].items()} == bases
    assert list(stored["baselines"]) == ["majority", "persistence"]


def test_as_dict_of_a_first_model_has_no_production() -> None:
    decision = promotion_gate(metrics(0.6), None, baselines())
    stored = json.loads(json.dumps(decision.as_dict(), allow_nan=False))
    assert stored["passed"] is True
    assert stored["reasons"] == []
    assert stored["production"] is None
    assert stored["candidate"]["accuracy"] == 0.6
    assert math.isclose(stored["candidate"]["samples"], 200)
