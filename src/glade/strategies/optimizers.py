"""Server-side optimizers: move the global arrays along the round's pseudo-gradient.

The pseudo-gradient of a round is ``delta = mean - x``: the (weighted) mean of the
returned arrays minus the global arrays ``x`` that were sent. An optimizer turns it
into a step, ``x <- x + step(delta)``, keeping per-array state (momentum, moments):

- :class:`Momentum` (FedAvgM, Hsu et al. 2019): ``v <- momentum * v + delta``,
  ``step = lr * v``.
- :class:`Adagrad`, :class:`Adam`, :class:`Yogi` (FedAdagrad / FedAdam / FedYogi, Reddi
  et al. 2021, "Adaptive Federated Optimization", Algorithm 2, no bias correction):
  ``m <- beta_1 * m + (1 - beta_1) * delta``; ``v`` by the method's rule;
  ``step = eta * m / (sqrt(v) + tau)``; ``m`` starts at 0 and ``v`` at ``tau**2``.

Precision: the state and the step are kept in the accumulator dtype of each array
(float32 for float32/float16/bfloat16, float64 for float64) and the new arrays are cast
back. Integer and bool arrays (e.g. batch-norm counters) have no gradient: they take
the rounded mean of the replies and the optimizer leaves them alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from glade.errors import ConfigError
from glade.records import ArrayRecord, ConfigRecord, RecordDict
from glade.strategies.aggregate import cast_back, is_integer_dtype
from glade.strategies.options import check_float

__all__ = ["Adagrad", "Adam", "Momentum", "ServerOptimizer", "Yogi"]

NDArray = np.ndarray[Any, Any]
STATE_KEY = "optimizer"


class ServerOptimizer(ABC):
    """Applies steps to the global arrays and keeps named state buffers per array.

    Subclasses name their buffers in ``slots`` and implement :meth:`update`. The state
    (buffers and step count) round-trips through :meth:`state` / :meth:`load_state`
    for checkpoints.
    """

    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.steps = 0
        self.buffers: dict[str, dict[str, NDArray]] = {slot: {} for slot in self.slots}

    @abstractmethod
    def update(self, name: str, delta: NDArray) -> NDArray:
        """The step for array ``name`` from its pseudo-gradient (may reuse ``delta``)."""

    def step(self, current: ArrayRecord, means: dict[str, NDArray]) -> ArrayRecord:
        """New global arrays from the arrays that were sent and the accumulator-dtype
        means of the replies (see :func:`~glade.strategies.aggregate.weighted_average`
        with ``keep_accumulator=True``; ``means`` is consumed)."""
        self.steps += 1
        out: dict[str, NDArray] = {}
        for name, mean in means.items():
            dtype = current[name].numpy().dtype
            if is_integer_dtype(dtype):
                out[name] = cast_back(mean, dtype)
                continue
            x = current[name].numpy().astype(mean.dtype)
            delta = np.subtract(mean, x, out=mean)
            x += self.update(name, delta)
            out[name] = cast_back(x, dtype)
        return ArrayRecord(out)

    def buffer(self, slot: str, name: str, like: NDArray, fill: float = 0.0) -> NDArray:
        """The ``slot`` buffer of array ``name``, created as ``fill`` on first use."""
        buffers = self.buffers[slot]
        if name not in buffers:
            buffers[name] = np.full(like.shape, fill, dtype=like.dtype)
        return buffers[name]

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> RecordDict:
        state = RecordDict(
            {STATE_KEY: ConfigRecord({"kind": type(self).__name__, "steps": self.steps})}
        )
        for slot, arrays in self.buffers.items():
            if arrays:
                state[f"{STATE_KEY}/{slot}"] = ArrayRecord(arrays)
        return state

    def load_state(self, state: RecordDict) -> None:
        meta = state.get(STATE_KEY)
        if not isinstance(meta, ConfigRecord) or meta.get("kind") != type(self).__name__:
            raise ConfigError(
                f"the checkpoint holds no {type(self).__name__} state (found {meta!r})"
            )
        self.steps = int(meta["steps"])  # type: ignore[arg-type]
        for slot in self.slots:
            record = state.get(f"{STATE_KEY}/{slot}")
            arrays = record if isinstance(record, ArrayRecord) else ArrayRecord()
            self.buffers[slot] = {n: a.numpy(copy=True) for n, a in arrays.items()}

    @staticmethod
    def keys(state: RecordDict) -> list[str]:
        """The keys of ``state`` that belong to an optimizer."""
        return [k for k in state if k == STATE_KEY or k.startswith(f"{STATE_KEY}/")]

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if k not in ("steps", "buffers")
        )
        return f"{type(self).__name__}({params})"


class Momentum(ServerOptimizer):
    """Server momentum: ``v <- momentum * v + delta``; step ``lr * v``."""

    slots = ("velocity",)

    def __init__(self, *, lr: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__()
        self.lr = check_float("server_learning_rate", lr, low=0.0, low_open=True)
        self.momentum = check_float("server_momentum", momentum, low=0.0, high=1.0, high_open=True)

    def update(self, name: str, delta: NDArray) -> NDArray:
        v = self.buffer("velocity", name, delta)
        v *= v.dtype.type(self.momentum)
        v += delta
        step: NDArray = np.multiply(v, v.dtype.type(self.lr), out=delta)
        return step


class _Adaptive(ServerOptimizer):
    """Shared first moment and step of Adagrad/Adam/Yogi; subclasses update ``v``."""

    slots = ("m", "v")

    def __init__(self, *, eta: float, beta_1: float, beta_2: float, tau: float) -> None:
        super().__init__()
        self.eta = check_float("eta", eta, low=0.0, low_open=True)
        self.beta_1 = check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.tau = check_float("tau", tau, low=0.0, low_open=True)

    @abstractmethod
    def second_moment(self, v: NDArray, delta_sq: NDArray) -> None:
        """Update ``v`` in place from ``delta ** 2``."""

    def update(self, name: str, delta: NDArray) -> NDArray:
        t = delta.dtype.type
        m = self.buffer("m", name, delta)
        v = self.buffer("v", name, delta, fill=self.tau**2)
        m *= t(self.beta_1)
        m += t(1 - self.beta_1) * delta
        self.second_moment(v, np.square(delta, out=delta))
        denom = np.sqrt(v, out=delta)
        denom += t(self.tau)
        step: NDArray = np.divide(t(self.eta) * m, denom, out=denom)
        return step


class Adagrad(_Adaptive):
    """``v <- v + delta**2`` (``beta_2`` is unused)."""

    def __init__(self, *, eta: float = 0.1, beta_1: float = 0.0, tau: float = 1e-3) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=0.0, tau=tau)

    def second_moment(self, v: NDArray, delta_sq: NDArray) -> None:
        v += delta_sq


class Adam(_Adaptive):
    """``v <- beta_2 * v + (1 - beta_2) * delta**2``."""

    def __init__(
        self, *, eta: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def second_moment(self, v: NDArray, delta_sq: NDArray) -> None:
        v *= v.dtype.type(self.beta_2)
        v += v.dtype.type(1 - self.beta_2) * delta_sq


class Yogi(_Adaptive):
    """``v <- v - (1 - beta_2) * delta**2 * sign(v - delta**2)``."""

    def __init__(
        self, *, eta: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def second_moment(self, v: NDArray, delta_sq: NDArray) -> None:
        sign = np.sign(v - delta_sq)
        v -= v.dtype.type(1 - self.beta_2) * delta_sq * sign
