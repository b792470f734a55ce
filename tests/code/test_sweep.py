"""The sweep's pure parts: which candidates a search space gives, and which one wins."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from aifx_ml.errors import InvalidInputError
from aifx_ml.training.config import TRAINING, TrainingConfig
from aifx_ml.training.sweep import CandidateFit, SearchSpace, best, candidates, widest

BASE = TrainingConfig()
SPACE = SearchSpace.from_mapping(TRAINING.search_space)


def test_one_candidate_is_the_base_alone() -> None:
    assert candidates(BASE, SPACE, 1, seed=1) == [BASE]


def test_k_candidates_are_the_base_then_distinct_draws_from_the_grid() -> None:
    drawn = candidates(BASE, SPACE, 4, seed=7)
    assert drawn[0] == BASE
    lstms = [c.lstm for c in drawn]
    assert len(set(lstms)) == 4  # no configuration twice
    for lstm in lstms[1:]:
        assert lstm.window in (30, 60, 90)
        assert lstm.lstm_units in ((64, 32), (128, 64))
        assert lstm.dense_units in (16, 32)
        assert lstm.learning_rate in (0.0005, 0.001, 0.002)
        assert lstm.dropout in ((0.2, 0.2, 0.2), BASE.lstm.dropout)
    # Everything but the architecture is the base's.
    assert all(replace(c, lstm=BASE.lstm) == BASE for c in drawn)
    assert candidates(BASE, SPACE, 4, seed=7) == drawn  # the seed decides
    assert candidates(BASE, SPACE, 4, seed=8) != drawn


def test_more_candidates_than_the_space_holds_is_refused() -> None:
    space = SearchSpace.from_mapping({"window": [30, 60]})
    assert len(candidates(BASE, space, 2, seed=1)) == 2
    with pytest.raises(InvalidInputError, match="asked for 3 candidates but the search space"):
        candidates(BASE, space, 3, seed=1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"layers": [1]}, "unknown search dimension"),
        ({"window": [0]}, "invalid window 0"),
        ({"lstm_units": [[64]]}, "invalid lstm_units"),
        ({"learning_rate": [1.5]}, r"invalid learning_rate 1.5 .*expected \(0, 1\)"),
        ({"dropout": [1.0]}, r"invalid dropout 1.0 .*expected \[0, 1\)"),
    ],
)
def test_a_bad_search_space_gets_one_clear_error(values: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SearchSpace.from_mapping(values)


def fit(index: int, loss: float) -> CandidateFit:
    return CandidateFit(index, BASE, loss, 0.5, 1, {"loss": [loss]}, [np.zeros(1)])


def test_the_lowest_validation_loss_wins_ties_to_the_earlier_nan_never() -> None:
    assert best([fit(0, 0.70), fit(1, 0.65), fit(2, 0.68)]).index == 1
    assert best([fit(0, 0.65), fit(1, 0.65)]).index == 0
    assert best([fit(0, math.nan), fit(1, 0.9)]).index == 1
    with pytest.raises(InvalidInputError):
        best([])


def test_loading_covers_the_longest_window() -> None:
    drawn = candidates(BASE, SearchSpace.from_mapping({"window": [90]}), 2, seed=1)
    assert widest(BASE, drawn).lstm.window == 90
    assert widest(BASE, [BASE]) == BASE
