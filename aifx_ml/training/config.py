"""What a training run is told (TrainingConfig), where it reads and writes (Stores), and what
it reports back (TrainingResult). Defaults are DESIGN.md's training defaults.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from aifx_ml.abtest.store import DEFAULT_SPLIT
from aifx_ml.config import Settings
from aifx_ml.domain import TestMode, TrainingStatus
from aifx_ml.errors import AifxError, InvalidInputError
from aifx_ml.evaluation.refresh import DEFAULT_REFRESH_AGE, RefreshPolicy
from aifx_ml.markets import validate_pair, validate_timeframe
from aifx_ml.models.lstm import MODEL_TYPE, LSTMConfig
from aifx_ml.models.store import ModelStore


@dataclass(frozen=True)
class TrainingConfig:
    """Every knob of both training types, defaults from DESIGN.md."""

    model_type: str = MODEL_TYPE
    pairs: tuple[str, ...] = ()  # empty: every stored pair
    timeframes: tuple[str, ...] = ("1h",)
    days: int = 30
    epochs: int = 50
    batch_size: int = 32
    early_stopping_patience: int = 5
    reduce_lr_patience: int = 3
    holdout_fraction: float = 0.2
    validation_fraction: float = 0.1  # of the training part, for early stopping only
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    seed: int = 42
    include_signals: bool = False
    incremental_hours: int = 24
    incremental_epochs: int = 5
    incremental_learning_rate: float = 1e-4
    min_train_samples: int = 30
    min_holdout_samples: int = 10
    lock_timeout: float = 3600.0

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out.update({f"lstm_{k}": v for k, v in out.pop("lstm").items()})
        return out


@dataclass(frozen=True)
class Stores:
    """Where a run reads and writes; built once at the edge from the settings."""

    engine: Engine
    models: ModelStore
    lock_dir: Path
    code_version: str = "unknown"
    actor: str = "aifx"  # the command or flow on whose behalf it runs, for the stage history

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        models: ModelStore,
        code_version: str,
        actor: str = "aifx",
    ) -> Stores:
        """The database and model store given; training locks live in the data folder."""
        return cls(
            engine=engine,
            models=models,
            lock_dir=settings.data_dir / "locks",
            code_version=code_version,
            actor=actor,
        )


@dataclass(frozen=True)
class ChallengerOffer:
    """What became of a freshly trained version offered as a challenger."""

    version: str
    action: str  # promoted | ab_test_started | test_running | refused
    ab_test_id: str | None = None
    detail: str = ""


@dataclass
class TrainingResult:
    """What a run did, for the CLI table, the flow's return value and tests."""

    status: TrainingStatus
    training_type: str
    training_log_id: uuid.UUID | None = None
    version: str | None = None
    parent_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    mlflow_run_id: str | None = None
    fell_back_to_full: bool = False
    challenger: ChallengerOffer | None = None  # set by the training flows


class TrainingSkipped(AifxError):
    """Nothing worth training on; the run is recorded as skipped with this reason."""


class TrainingFailedError(AifxError):
    """The run failed; its log row says why and nothing was registered."""


_DESIGN = TrainingConfig()


@dataclass(frozen=True)
class TrainingParams:
    """The parameters of both training flows (`weekly-full`, `daily-incremental`), of
    `aifx train weekly|daily` and of the deployments in prefect.yaml, with the one default each
    of them reads from here (tests/code/test_defaults_agree.py keeps them equal).

    The values are DESIGN.md's, as TrainingConfig and LSTMConfig hold them: weekly — the last
    30 days, 80/20 split, LSTM(128) → LSTM(64) → Dense(32), Adam 1e-3, up to 50 epochs, batch
    32, 60-candle windows; daily — the data since the last run (24 h), 5 epochs at Adam 1e-4.
    """

    pairs: tuple[str, ...] | None = None  # None: every stored pair
    timeframes: tuple[str, ...] = _DESIGN.timeframes
    days: int = _DESIGN.days
    epochs: int = _DESIGN.epochs  # a full training's; the daily flow's `full_epochs`
    incremental_epochs: int = _DESIGN.incremental_epochs  # the daily flow's `epochs`
    batch_size: int = _DESIGN.batch_size
    window: int = _DESIGN.lstm.window
    lstm_units: tuple[int, int] = _DESIGN.lstm.lstm_units
    dense_units: int = _DESIGN.lstm.dense_units
    learning_rate: float = _DESIGN.lstm.learning_rate  # a full training's
    seed: int = _DESIGN.seed
    include_signals: bool = _DESIGN.include_signals
    lock_timeout: float = _DESIGN.lock_timeout  # `aifx train --wait`
    auto_challenger: bool = True  # gate the new version; on a pass, A/B test it
    challenger_mode: TestMode = TestMode.SHADOW  # how the challenger is tried live
    challenger_split: float = DEFAULT_SPLIT  # share of traffic to the challenger (split)
    ab_test_plan: dict[str, Any] | None = None  # TestPlan fields; None: the library's plan
    # A full training may replace a Production version this many days old without winning a
    # test, when not shown worse (aifx_ml.evaluation.refresh); 0: never.
    refresh_days: float = DEFAULT_REFRESH_AGE / timedelta(days=1)
    keep_waiting: int = 3  # candidates left waiting in Staging per model type, newest first
    # The weekly flow's sweep (aifx_ml/training/sweep.py): this many configurations, the
    # flow's own first and the others drawn from `search_space`, the best chosen on the
    # validation split. 1: no sweep, one training as before sweeps existed.
    candidates: int = 1
    search_space: dict[str, list[Any]] = field(
        default_factory=lambda: {
            "window": [30, 60, 90],
            "lstm_units": [[64, 32], [128, 64]],
            "dense_units": [16, 32],
            "learning_rate": [0.0005, 0.001, 0.002],
            "dropout": [0.2, 0.3],
        }
    )


TRAINING = TrainingParams()


@dataclass(frozen=True)
class ChallengerPolicy:
    """What the training flows do with a new version that completed: try it live against
    Production (a test of `mode`, `split` for a split test, run to `plan`: TestPlan fields,
    None for the library's), let it refresh a Production version `refresh_days` old (0:
    never), and leave at most `keep_waiting` candidates waiting in Staging."""

    mode: TestMode = TRAINING.challenger_mode
    split: float = TRAINING.challenger_split
    plan: dict[str, Any] | None = TRAINING.ab_test_plan
    refresh_days: float = TRAINING.refresh_days
    keep_waiting: int = TRAINING.keep_waiting

    def __post_init__(self) -> None:
        self.refresh  # noqa: B018  (checks refresh_days)
        if self.keep_waiting < 0:
            raise InvalidInputError(
                f"invalid keep_waiting {self.keep_waiting}: expected 0 or more candidates"
            )

    @property
    def refresh(self) -> RefreshPolicy:
        return RefreshPolicy.after_days(self.refresh_days)


def training_config(
    pairs: Sequence[str] | None = None,
    timeframes: Sequence[str] = TRAINING.timeframes,
    *,
    days: int | None = None,
    epochs: int | None = None,
    incremental_epochs: int | None = None,
    batch_size: int | None = None,
    window: int | None = None,
    lstm_units: Sequence[int] | None = None,
    dense_units: int | None = None,
    learning_rate: float | None = None,
    seed: int = TRAINING.seed,
    include_signals: bool = TRAINING.include_signals,
    lock_timeout: float = TRAINING.lock_timeout,
) -> TrainingConfig:
    """A TrainingConfig from loose values (CLI options, flow parameters), each checked.

    None keeps DESIGN.md's default; a bad value raises one clear InvalidInputError.
    """
    sizes = {
        "days": days,
        "epochs": epochs,
        "incremental_epochs": incremental_epochs,
        "batch_size": batch_size,
        "window": window,
        "dense_units": dense_units,
    }
    for name, value in sizes.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise InvalidInputError(f"invalid {name} {value!r}: expected a positive integer")
    if lstm_units is not None and (
        len(lstm_units) != 2 or any(not isinstance(u, int) or u < 1 for u in lstm_units)
    ):
        raise InvalidInputError(
            f"invalid lstm_units {list(lstm_units)}: expected two positive sizes like 128,64"
        )
    if not timeframes:
        raise InvalidInputError("no timeframes given: expected at least one, e.g. 1h")
    lstm = LSTMConfig()
    if window is not None:
        lstm = replace(lstm, window=window)
    if lstm_units is not None:
        lstm = replace(lstm, lstm_units=(int(lstm_units[0]), int(lstm_units[1])))
    if dense_units is not None:
        lstm = replace(lstm, dense_units=dense_units)
    if learning_rate is not None:
        if not 0 < learning_rate < 1:
            raise InvalidInputError(f"invalid learning_rate {learning_rate}: expected (0, 1)")
        lstm = replace(lstm, learning_rate=learning_rate)
    config = TrainingConfig(
        pairs=tuple(validate_pair(p) for p in pairs or ()),
        timeframes=tuple(validate_timeframe(t) for t in timeframes),
        lstm=lstm,
        seed=seed,
        include_signals=include_signals,
        lock_timeout=lock_timeout,
    )
    return replace(
        config,
        days=days or config.days,
        epochs=epochs or config.epochs,
        incremental_epochs=incremental_epochs or config.incremental_epochs,
        batch_size=batch_size or config.batch_size,
    )
