"""Calculation counters: counters computed point by point from other counters' values.

A :class:`CalcCounterController` listens to its input counters' controllers (what they hand
over at ``read``) and evaluates each output's numpy expression on the same points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._controller import check_unique_names
from ._counters import Counter, CounterController
from ._errors import DeviceError
from ._protocols import AcquisitionParameters


class CalcOutputParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    expression: str = Field(description="numpy expression of the input tags, e.g. 'a / b'")
    unit: str | None = None


class CalcCounterParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    inputs: dict[str, Counter] = Field(description="tag -> counter ($name in the YAML)")
    outputs: list[CalcOutputParameters]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_unique_names([o.name for o in self.outputs], "output counter")
        return self


_EXPRESSION_GLOBALS = {
    "__builtins__": {},
    "np": np,
    **{f: getattr(np, f) for f in ("sqrt", "exp", "log", "log10", "abs", "sin", "cos", "where")},
}


class CalcCounterController(CounterController):
    """Counters computed from other counters, point by point.

    ``compute(values)`` maps ``{input tag: (n, ...) array}`` to ``{output name: (n, ...)
    array}``; subclasses override it, or give ``expressions`` (configuration). In a scan the
    inputs' controllers are read as usual; this controller listens to their reads (``prepare``
    subscribes) and ``read`` returns the points for which every input has arrived, so the
    acquisition layer reads it after the controllers in ``depends_on``.
    """

    Parameters: ClassVar[type[BaseModel]] = CalcCounterParameters

    def __init__(
        self,
        name: str,
        inputs: Mapping[str, Counter],
        outputs: Sequence[CalcOutputParameters],
    ) -> None:
        super().__init__(name)
        for tag, counter in inputs.items():
            if not isinstance(counter, Counter):
                raise DeviceError(name, f"input {tag!r} must be a counter, not {counter!r}")
        self.inputs = dict(inputs)
        self.expressions: dict[str, Any] = {}
        for output in outputs:
            try:
                self.expressions[output.name] = compile(output.expression, output.name, "eval")
            except SyntaxError as exc:
                raise DeviceError(
                    name, f"expression of {output.name!r} is invalid: {exc.msg}"
                ) from None
            self.add_counter(Counter(output.name, self, unit=output.unit))
        self._buffers: dict[str, list[np.ndarray]] = {tag: [] for tag in self.inputs}
        self._unsubscribe: list[Callable[[], None]] = []

    @classmethod
    def from_config(cls, name: str, params: CalcCounterParameters, context: Any) -> Self:
        return cls(name, params.inputs, params.outputs)

    @property
    def depends_on(self) -> tuple[CounterController, ...]:
        seen: dict[int, CounterController] = {}
        for counter in self.inputs.values():
            seen.setdefault(id(counter.controller), counter.controller)
        return tuple(seen.values())

    def compute(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs from inputs (each ``(n, ...)``): evaluates the expressions."""
        names = {"__builtins__": {}, **_EXPRESSION_GLOBALS, **values}
        out = {}
        for name, code in self.expressions.items():
            try:
                out[name] = np.asarray(eval(code, names), dtype=np.float64)
            except Exception as exc:
                raise DeviceError(
                    self.name, f"computing {name!r} failed: {type(exc).__name__}: {exc}"
                ) from None
        return out

    async def prepare(self, params: AcquisitionParameters) -> None:
        self.params = params
        self._stop_listening()
        self._buffers = {tag: [] for tag in self.inputs}
        by_controller: dict[int, list[tuple[str, Counter]]] = {}
        for tag, counter in self.inputs.items():
            by_controller.setdefault(id(counter.controller), []).append((tag, counter))
        for members in by_controller.values():
            controller = members[0][1].controller

            def listener(
                _ctrl: CounterController,
                data: Mapping[str, np.ndarray],
                members: list[tuple[str, Counter]] = members,
            ) -> None:
                for tag, counter in members:
                    if counter.name in data:
                        self._buffers[tag].append(data[counter.name])

            self._unsubscribe.append(controller.add_read_listener(listener))

    async def trigger(self) -> None:
        """Nothing to measure: the inputs' controllers are triggered by the chain."""

    async def read(self) -> dict[str, np.ndarray]:
        joined = {
            tag: np.concatenate(chunks) if chunks else np.empty((0,))
            for tag, chunks in self._buffers.items()
        }
        ready = min((len(v) for v in joined.values()), default=0)
        if ready == 0:
            return self._empty()
        values = {tag: v[:ready] for tag, v in joined.items()}
        self._buffers = {tag: [v[ready:]] if len(v) > ready else [] for tag, v in joined.items()}
        data = self.compute(values)
        for listener in tuple(self._listeners):
            listener(self, data)
        return data

    async def stop(self) -> None:
        self._stop_listening()

    def _stop_listening(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    async def count(self, count_time: float) -> dict[str, np.ndarray]:
        """Count the input controllers once and compute."""
        params = AcquisitionParameters(count_time=count_time, npoints=1)
        await self.prepare(params)
        try:
            for controller in self.depends_on:
                await controller.count(count_time)  # read() feeds the listeners
            data = await self.read()
        finally:
            self._stop_listening()
        return {name: values[0] for name, values in data.items()}
