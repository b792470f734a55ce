"""The seed LSTM of DESIGN.md: LSTM(128, seq) → Dropout → LSTM(64) → Dropout → Dense(32, relu)
→ Dropout → Dense(1, sigmoid), Adam, binary cross-entropy. Sizes are configurable."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

MODEL_TYPE = "lstm"


@dataclass(frozen=True)
class LSTMConfig:
    """Everything that rebuilds the architecture; saved next to the weights."""

    window: int = 60
    n_features: int = 17
    lstm_units: tuple[int, int] = (128, 64)
    dense_units: int = 32
    dropout: tuple[float, float, float] = (0.3, 0.3, 0.2)
    learning_rate: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        return cls(
            window=int(data["window"]),
            n_features=int(data["n_features"]),
            lstm_units=(int(data["lstm_units"][0]), int(data["lstm_units"][1])),
            dense_units=int(data["dense_units"]),
            dropout=(
                float(data["dropout"][0]),
                float(data["dropout"][1]),
                float(data["dropout"][2]),
            ),
            learning_rate=float(data["learning_rate"]),
        )


def build_lstm(config: LSTMConfig, seed: int = 42) -> keras.Model:
    """A compiled model; the same seed and config give the same initial weights."""
    # TensorFlow takes seconds to import: only when a model is built, not at import.
    import keras  # noqa: PLC0415  (TensorFlow loads only where a model is built)

    keras.utils.set_random_seed(seed)
    first, second = config.lstm_units
    d1, d2, d3 = config.dropout
    # Every random layer gets its own seed from `seed`. Left unseeded, Keras draws them from
    # Python's global `random`, which other threads of a flow run (Prefect names its task runs
    # with it) may have moved since set_random_seed: the same run would build another model.
    glorot, orthogonal = keras.initializers.GlorotUniform, keras.initializers.Orthogonal
    model = keras.Sequential(
        [
            keras.Input(shape=(config.window, config.n_features), name="window"),
            keras.layers.LSTM(
                first,
                return_sequences=True,
                kernel_initializer=glorot(seed=seed + 1),
                recurrent_initializer=orthogonal(seed=seed + 2),
                seed=seed + 3,
            ),
            keras.layers.Dropout(d1, seed=seed + 4),
            keras.layers.LSTM(
                second,
                kernel_initializer=glorot(seed=seed + 5),
                recurrent_initializer=orthogonal(seed=seed + 6),
                seed=seed + 7,
            ),
            keras.layers.Dropout(d2, seed=seed + 8),
            keras.layers.Dense(
                config.dense_units, activation="relu", kernel_initializer=glorot(seed=seed + 9)
            ),
            keras.layers.Dropout(d3, seed=seed + 10),
            keras.layers.Dense(
                1, activation="sigmoid", name="p_up", kernel_initializer=glorot(seed=seed + 11)
            ),
        ],
        name=MODEL_TYPE,
    )
    compile_for_training(model, config.learning_rate)
    return model


def compile_for_training(model: keras.Model, learning_rate: float) -> None:
    """(Re)compile with Adam at `learning_rate`: fine-tuning recompiles at a lower rate."""
    import keras  # noqa: PLC0415  (TensorFlow loads only where a model is built)

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
