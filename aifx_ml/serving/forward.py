"""A model's forward pass as the service calls it: XLA-compiled, with the traced graph as a
stand-in while a compilation runs.

On the DESIGN.md LSTM (window 60) on 2 cores, the traced `tf.function` costs ~5 ms for one
window and the same function compiled with XLA (`jit_compile=True`) ~0.7 ms, with the same
answers (to 1e-7); at 64 windows, ~27 ms against ~17 ms. XLA compiles once per input shape
(~0.6 s each), so batches are padded to a few sizes (`BUCKETS`) and each size is compiled on
a background thread the first time it is needed: until it is ready (or if XLA fails on this
machine), that size runs on the traced graph. Nothing waits for a compilation, and no request
pays one; `warm()` compiles sizes ahead, before a service reports ready. A replay compiles on
first use instead (`background=False`), so that its answers never depend on timing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)
BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # the batch sizes XLA compiles; larger batches are split


class Forward:
    """`forward(x)` for a float32 (batch, window, features) array: the model's raw output,
    (batch, 1)."""

    def __init__(
        self, model: Any, window: int, n_features: int, name: str, background: bool = True
    ) -> None:
        """`background`: compile a new size on a thread, the graph answering meanwhile;
        without it the first call of a size compiles it and waits (results then never depend
        on timing: what a replay needs)."""
        import tensorflow as tf  # noqa: PLC0415  (only a serving process pays for TensorFlow)

        spec = tf.TensorSpec([None, window, n_features], tf.float32)

        def forward(x: Any) -> Any:
            return model(x, training=False)

        # Concrete functions skip the per-call signature matching of a polymorphic one.
        self._graph = tf.function(forward, input_signature=[spec]).get_concrete_function()
        self._xla = tf.function(
            forward, input_signature=[spec], jit_compile=True
        ).get_concrete_function()
        self._graph(tf.zeros((1, window, n_features), tf.float32))  # traced now, not on a request
        self._shape, self._name = (window, n_features), name
        self._ready: set[int] = set()
        self._started: dict[int, threading.Event] = {}  # set once compiled (or failed)
        self._lock = threading.Lock()
        self._tf = tf
        self._background = background

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        largest = BUCKETS[-1]
        if len(x) > largest:
            return np.concatenate([self(x[i : i + largest]) for i in range(0, len(x), largest)])
        bucket = _bucket(len(x))
        if bucket not in self._ready:
            if not self._background:
                self.warm([bucket])
            else:
                self._compile_later(bucket)
            if bucket not in self._ready:  # compiling, or XLA failed here: the graph answers
                return self.traced(x)
        padded = np.zeros((bucket, *self._shape), np.float32)
        padded[: len(x)] = x
        out: npt.NDArray[np.float32] = self._xla(self._tf.constant(padded)).numpy()
        return out[: len(x)]

    def traced(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The traced graph's answer, never XLA's (to compare the two)."""
        out: npt.NDArray[np.float32] = self._graph(self._tf.constant(x)).numpy()
        return out

    def warm(self, sizes: Iterable[int] = BUCKETS) -> None:
        """Compile the buckets of these batch sizes now, or wait for their compilation."""
        for bucket in sorted({_bucket(min(size, BUCKETS[-1])) for size in sizes}):
            if self._start(bucket):
                self._compile(bucket)
            self._started[bucket].wait()

    def compiled(self) -> list[int]:
        """The batch sizes served by XLA so far."""
        return sorted(self._ready)

    def _start(self, bucket: int) -> bool:
        """Claim the compilation of `bucket` (False: it is someone else's, or done)."""
        with self._lock:
            if bucket in self._started:
                return False
            self._started[bucket] = threading.Event()
            return True

    def _compile_later(self, bucket: int) -> None:
        if self._start(bucket):
            threading.Thread(
                target=self._compile, args=(bucket,), name=f"xla-{self._name}-{bucket}", daemon=True
            ).start()

    def _compile(self, bucket: int) -> None:
        try:
            self._xla(self._tf.zeros((bucket, *self._shape), self._tf.float32))
        except Exception as exc:  # noqa: BLE001  (XLA cannot compile it here: the graph serves)
            log.warning(
                "%s: XLA could not compile batches of %d (%s); the traced graph serves them",
                self._name,
                bucket,
                exc,
            )
        else:
            self._ready.add(bucket)
        finally:
            self._started[bucket].set()


def _bucket(size: int) -> int:
    return next(b for b in BUCKETS if b >= size)
