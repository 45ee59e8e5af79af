"""The motor users touch: ``Axis``, with user and dial positions, limits, backlash, encoder.

Positions
    The controller counts *steps*; ``dial = steps / steps_per_unit``; the user position is
    ``user = sign * dial + offset``. Changing the user position (``set_position``) changes
    the offset, never the hardware. Software limits are kept in dial units (as in BLISS) and
    shown in user units.

Motion
    ``move`` checks every position the motion will pass through (the backlash approach too)
    against the software limits *before* anything moves, then asks the controller to start and,
    unless ``wait=False``, waits: ``wait_move`` polls the controller's state with real awaits
    (``polling_interval``), fires position and state callbacks, performs the backlash approach
    and, with an encoder, checks it against the target. A cancelled wait stops the axis in a
    shielded scope. An axis whose controller reports READY at once (a zero-time simulator)
    never sleeps: a move costs a few calls.

Settings
    With a :class:`~blissng.redisdb.SettingsStore`, offset, velocity, acceleration,
    limits and the last dial position live in Redis and survive a restart; without one they
    live in memory. At connection, the controller's position is compared with the stored one:
    a difference is reported (``position_check="report"``, the controller's position is kept
    and ``axis.position_mismatch`` says what happened) or the controller is resynchronised to
    the stored position (``position_check="resync"``); the position never jumps silently.

One module of ~800 lines because ``Axis`` is one state machine: positions, limits, motion
and settings share its state and its move in progress; what is not the axis (the controller
base, groups, calculated axes) lives in its own module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ._errors import (
    AxisBusyError,
    AxisFaultError,
    DeviceError,
    EncoderMismatchError,
    LimitError,
    LimitSwitchError,
)

if TYPE_CHECKING:
    from blissng.redisdb import ObjectSettings

    from ._controller import AxisController

log = logging.getLogger(__name__)

STOP_DEADLINE = 10.0  # seconds a cancelled move may take to stop the axis


class AxisState(enum.Enum):
    """What an axis is doing; at a console ``m1.state`` reads ``READY (Axis is READY)``, as
    in BLISS."""

    READY = "READY"
    MOVING = "MOVING"
    LIMPOS = "LIMPOS"  # on the positive hardware limit switch
    LIMNEG = "LIMNEG"  # on the negative hardware limit switch
    FAULT = "FAULT"
    DISABLED = "DISABLED"

    def __info__(self) -> str:
        return f"{self.value} ({_STATE_MEANINGS[self]})"


_STATE_MEANINGS = {
    AxisState.READY: "Axis is READY",
    AxisState.MOVING: "Axis is MOVING",
    AxisState.LIMPOS: "Hardware high limit active",
    AxisState.LIMNEG: "Hardware low limit active",
    AxisState.FAULT: "Axis reports a fault",
    AxisState.DISABLED: "Axis is disabled",
}


def _nonzero_steps(value: float) -> float:
    if value == 0:
        raise ValueError("steps_per_unit must not be 0")
    return value


# The steps_per_unit of a motor or of its encoder: positions are divided by it.
StepsPerUnit = Annotated[float, AfterValidator(_nonzero_steps)]


class EncoderParameters(BaseModel):
    """An encoder read by the axis' controller: its resolution and the tolerated error."""

    model_config = ConfigDict(extra="forbid")
    steps_per_unit: StepsPerUnit = Field(1.0, description="encoder counts per user unit")
    tolerance: float = Field(0.01, gt=0, description="allowed |encoder - target| after a move")


class AxisParameters(BaseModel):
    """One axis in the configuration (a child mapping of its controller)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    steps_per_unit: StepsPerUnit = 1.0
    sign: Literal[1, -1] = 1
    offset: float = 0.0
    velocity: float = Field(1.0, gt=0, description="units per second")
    velocity_high_limit: float | None = Field(
        None, gt=0, description="the fastest the motor may go, units per second (continuous scans)"
    )
    acceleration: float = Field(10.0, gt=0, description="units per second squared")
    backlash: float = Field(0.0, description="dial units; final approach direction")
    low_limit: float | None = Field(None, description="software limit, dial units")
    high_limit: float | None = Field(None, description="software limit, dial units")
    unit: str | None = None
    encoder: EncoderParameters | None = None
    position_check: Literal["report", "resync"] = "report"
    position_tolerance: float | None = Field(
        None, ge=0, description="start-up check tolerance, default one step"
    )
    polling_interval: float = Field(0.01, gt=0, description="state polling while moving, s")


class AxisSettings(BaseModel):
    """What a user may change at run time and what survives a restart."""

    offset: float = 0.0
    velocity: float = Field(1.0, gt=0)
    acceleration: float = Field(10.0, gt=0)
    low_limit: float | None = None
    high_limit: float | None = None
    dial_position: float | None = None

    @classmethod
    def from_parameters(cls, params: AxisParameters) -> AxisSettings:
        return cls(
            offset=params.offset,
            velocity=params.velocity,
            acceleration=params.acceleration,
            low_limit=params.low_limit,
            high_limit=params.high_limit,
        )


PositionCallback = Callable[[float], Any]
StateCallback = Callable[[AxisState], Any]


@dataclasses.dataclass(slots=True)
class Motion:
    """One axis to move, as a controller receives it: target and distance in steps."""

    axis: Axis
    target_steps: float
    delta_steps: float


class MotionInProgress:
    """One running move: the dial positions still to reach and who is waiting."""

    __slots__ = ("_done", "error", "final_dial", "finished", "plan", "polling", "stopped")

    def __init__(self, plan: list[float]) -> None:
        self.plan = plan  # dial targets still to start, after the current one
        self.final_dial = plan[-1] if plan else math.nan
        self._done: anyio.Event | None = None  # created only when a second task waits
        self.finished = False
        self.error: BaseException | None = None
        self.polling = False
        self.stopped = False

    async def wait(self) -> None:
        if self.finished:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()

    def finish(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()


class Axis:
    """A motor axis of an :class:`~blissng.devices.AxisController`.

    Built by its controller from :class:`AxisParameters`; ``config.get("m1")`` returns it.
    Implements :class:`blissng.devices.Movable`.
    """

    def __init__(
        self,
        name: str,
        controller: AxisController,
        params: AxisParameters,
        settings: ObjectSettings[AxisSettings] | None = None,
    ) -> None:
        self.name = name
        self.controller = controller
        self.params = params
        self.steps_per_unit = params.steps_per_unit
        self.sign: int = params.sign
        self.backlash = params.backlash
        self.unit = params.unit
        self.encoder = params.encoder
        self.polling_interval = params.polling_interval
        self.position_tolerance = (
            params.position_tolerance
            if params.position_tolerance is not None
            else 1.0 / abs(params.steps_per_unit)
        )
        self._store = settings
        values = settings.values if settings is not None else AxisSettings.from_parameters(params)
        self._apply(values)
        self._dial = 0.0
        self._state = AxisState.READY
        self._motion: MotionInProgress | None = None
        self._connected = False
        self._position_callbacks: list[PositionCallback] = []
        self._state_callbacks: list[StateCallback] = []
        self.position_mismatch: str | None = None
        self._persisted_dial: float | None = None
        self._persist_failing = False  # the settings Redis did not answer: warned once
        # Anything the controller wants to keep per axis (a channel number, a parsed reply).
        self.controller_data: dict[str, Any] = {}

    def _apply(self, values: AxisSettings) -> None:
        self.offset = values.offset
        self._velocity = values.velocity
        self._acceleration = values.acceleration
        self._low_dial = values.low_limit
        self._high_dial = values.high_limit

    def __repr__(self) -> str:
        return f"<Axis {self.name} on {self.controller.name}>"

    # ------------------------------------------------------------------ conversions

    def dial_to_user(self, dial: float) -> float:
        return self.sign * dial + self.offset

    def user_to_dial(self, user: float) -> float:
        return (user - self.offset) * self.sign

    # ------------------------------------------------------------------ cached values (no I/O)

    @property
    def position(self) -> float:
        """Last known user position (updated by every read and move)."""
        return self.sign * self._dial + self.offset

    @property
    def dial(self) -> float:
        return self._dial

    @property
    def state(self) -> AxisState:
        return self._state

    @property
    def is_moving(self) -> bool:
        return self._motion is not None

    @property
    def velocity(self) -> float:
        return self._velocity

    @property
    def acceleration(self) -> float:
        return self._acceleration

    @property
    def velocity_high_limit(self) -> float:
        """The fastest the motor may go (units/s; infinite when not configured)."""
        limit = self.params.velocity_high_limit
        return math.inf if limit is None else limit

    @property
    def encoder_steps_per_unit(self) -> float:
        """Encoder counts per dial unit: the encoder's when configured, else the motor's
        steps (a controller whose position counter is the only encoder)."""
        return self.encoder.steps_per_unit if self.encoder is not None else self.steps_per_unit

    @property
    def limits(self) -> tuple[float, float]:
        """Software limits in user units, (low, high); infinite where there is none."""
        low = -math.inf if self._low_dial is None else self.dial_to_user(self._low_dial)
        high = math.inf if self._high_dial is None else self.dial_to_user(self._high_dial)
        return (min(low, high), max(low, high))

    @property
    def dial_limits(self) -> tuple[float, float]:
        low = -math.inf if self._low_dial is None else self._low_dial
        high = math.inf if self._high_dial is None else self._high_dial
        return (low, high)

    # ------------------------------------------------------------------ callbacks

    def on_position(self, callback: PositionCallback) -> Callable[[], None]:
        """Call ``callback(user_position)`` on every position update; returns an unsubscriber."""
        self._position_callbacks.append(callback)
        return lambda: self._discard(self._position_callbacks, callback)

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(state)`` on every state change; returns an unsubscriber."""
        self._state_callbacks.append(callback)
        return lambda: self._discard(self._state_callbacks, callback)

    @staticmethod
    def _discard(callbacks: list[Any], callback: Any) -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    def _set_dial(self, dial: float) -> None:
        if dial == self._dial:
            return
        self._dial = dial
        if self._position_callbacks:
            user = self.position
            for callback in tuple(self._position_callbacks):
                try:
                    callback(user)
                except Exception:
                    log.exception("position callback of %s failed", self.name)

    def _set_state(self, state: AxisState) -> None:
        if state is self._state:
            return
        self._state = state
        for callback in tuple(self._state_callbacks):
            try:
                callback(state)
            except Exception:
                log.exception("state callback of %s failed", self.name)

    # ------------------------------------------------------------------ connection

    async def connect(self) -> None:
        """Connect the controller (idempotent); it then runs :meth:`sync_with_controller` for
        each axis."""
        if not self._connected:
            await self.controller.connect()

    def controller_closed(self) -> None:
        """Told by the controller when it closes: the next call connects it again."""
        self._connected = False

    async def sync_with_controller(self) -> None:
        """Bring the axis and its controller in line: load the axis' settings, push velocity
        and acceleration, read the position and check it against the stored one.

        The last step of :meth:`AxisController.connect`, once per connection, after the
        controller's ``initialize_axis``.
        """
        controller = self.controller
        if self._store is not None:
            values = await self._store.load()
            self._apply(values)
            stored_dial = values.dial_position
            self._persisted_dial = stored_dial
        else:
            stored_dial = None
        await controller.set_velocity(self, self._velocity * abs(self.steps_per_unit))
        await controller.set_acceleration(self, self._acceleration * abs(self.steps_per_unit))
        dial = await controller.read_position(self) / self.steps_per_unit
        if stored_dial is not None and abs(stored_dial - dial) > self.position_tolerance:
            if self.params.position_check == "resync":
                await controller.set_position(self, stored_dial * self.steps_per_unit)
                dial = await controller.read_position(self) / self.steps_per_unit
                self.position_mismatch = (
                    f"{self.name}: controller dial position {dial:g} differed from the "
                    f"stored {stored_dial:g}; controller resynchronised to the stored position"
                )
            else:
                self.position_mismatch = (
                    f"{self.name}: controller dial position {dial:g} differs from the stored "
                    f"{stored_dial:g} (tolerance {self.position_tolerance:g}); keeping the "
                    "controller's position. Use set_dial() to correct the controller, or "
                    "position_check: resync in the configuration"
                )
            log.warning("%s", self.position_mismatch)
        self._dial = dial
        self._state = await controller.state(self)
        self._connected = True
        await self._persist_dial()

    async def _persist_dial(self) -> None:
        """Store the dial position after a motion: one HSET (the move's hot path, so without
        the validation of ``ObjectSettings.set``: a float needs none).

        A record, not a reason to fail the motion that already happened: when the settings
        Redis cannot be reached (a restart), the motion succeeds with a warning and the
        position is stored after the next one (docs/reliability.md)."""
        from redis.exceptions import RedisError

        store = self._store
        if store is not None and self._persisted_dial != self._dial:
            try:
                await store.store.redis.hset(store.key, "dial_position", json.dumps(self._dial))
            except (RedisError, OSError) as exc:
                (log.debug if self._persist_failing else log.warning)(
                    "%s: dial position %s not stored in the settings Redis (%s); it is "
                    "stored after the next motion",
                    self.name,
                    self._dial,
                    exc,
                )
                self._persist_failing = True
                return
            if self._persist_failing:
                log.warning("%s: dial position stored again", self.name)
                self._persist_failing = False
            self._persisted_dial = self._dial

    async def _ensure_connected(self) -> None:
        if not self._connected:
            await self.controller.connect()

    # ------------------------------------------------------------------ reading

    async def read_position(self) -> float:
        """Ask the controller; update and return the user position."""
        await self._ensure_connected()
        self._set_dial(await self.controller.read_position(self) / self.steps_per_unit)
        return self.position

    async def read_dial(self) -> float:
        await self.read_position()
        return self._dial

    async def read_state(self) -> AxisState:
        await self._ensure_connected()
        state = await self.controller.state(self)
        if self._motion is None or state is AxisState.MOVING:
            self._set_state(state)
        return state

    async def read_encoder(self) -> float:
        """The encoder position in dial units (requires ``encoder`` in the configuration)."""
        if self.encoder is None:
            raise DeviceError(self.name, "has no encoder configured")
        await self._ensure_connected()
        return await self.controller.read_encoder(self) / self.encoder.steps_per_unit

    # ------------------------------------------------------------------ settings

    async def _save(self, **changes: Any) -> None:
        if self._store is not None:
            values = await self._store.set(**changes)
        else:
            current = AxisSettings(
                offset=self.offset,
                velocity=self._velocity,
                acceleration=self._acceleration,
                low_limit=self._low_dial,
                high_limit=self._high_dial,
            )
            values = AxisSettings.model_validate({**current.model_dump(), **changes})
        self._apply(values)

    def use_controller_defaults(self, **values: float | None) -> None:
        """Defaults read from the hardware for what the configuration does not give.

        A motor of a control system (a Tango or EPICS motor) owns its velocity, acceleration
        and limits: its controller reads them in ``initialize_axis`` and passes here those the
        YAML leaves out (``velocity``, ``acceleration``: units/s, units/s²; ``low_limit``,
        ``high_limit``: dial units). Stored settings still override them, and
        ``reset_settings`` returns to them.
        """
        changes = {k: v for k, v in values.items() if k not in self.params.model_fields_set}
        if not changes:
            return
        unknown = set(changes) - {"velocity", "acceleration", "low_limit", "high_limit"}
        if unknown:
            raise DeviceError(self.name, f"no controller default for {sorted(unknown)}")
        self.params = self.params.model_copy(update=changes)
        defaults = AxisSettings.from_parameters(self.params)
        if self._store is not None:
            self._store.defaults = defaults
            self._store.values = defaults
        self._apply(defaults)

    async def set_velocity(self, velocity: float) -> None:
        """Units per second; stored, then pushed to the controller."""
        self._check_velocity(velocity)
        await self._ensure_connected()
        await self._save(velocity=float(velocity))
        await self.controller.set_velocity(self, self._velocity * abs(self.steps_per_unit))

    def _check_velocity(self, velocity: float) -> None:
        if not velocity > 0:
            raise DeviceError(self.name, f"velocity must be > 0, not {velocity!r}")
        if velocity > self.velocity_high_limit:
            raise DeviceError(
                self.name,
                f"velocity {velocity:g} is above its limit {self.velocity_high_limit:g} "
                "(velocity_high_limit in the configuration)",
            )

    @contextlib.asynccontextmanager
    async def velocity_override(self, velocity: float) -> AsyncIterator[None]:
        """Run the block with the controller at ``velocity`` (units/s) without storing it
        (a continuous scan's line): the stored velocity is pushed back at the end, also
        after an error or a cancellation (once the axis has stopped)."""
        self._check_velocity(velocity)
        await self._ensure_connected()
        spu = abs(self.steps_per_unit)
        await self.controller.set_velocity(self, velocity * spu)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + STOP_DEADLINE
                await self.controller.set_velocity(self, self._velocity * spu)

    async def set_acceleration(self, acceleration: float) -> None:
        if not acceleration > 0:
            raise DeviceError(self.name, f"acceleration must be > 0, not {acceleration!r}")
        await self._ensure_connected()
        await self._save(acceleration=float(acceleration))
        await self.controller.set_acceleration(self, self._acceleration * abs(self.steps_per_unit))

    async def set_limits(self, low: float | None, high: float | None) -> None:
        """Software limits in *user* units (``None``: no limit on that side)."""
        await self._ensure_connected()
        dials = [None if v is None else self.user_to_dial(float(v)) for v in (low, high)]
        if self.sign < 0:
            dials.reverse()
        low_dial, high_dial = dials
        if low_dial is not None and high_dial is not None and low_dial > high_dial:
            raise DeviceError(self.name, f"low limit {low} is above high limit {high}")
        await self._save(low_limit=low_dial, high_limit=high_dial)

    async def set_position(self, user: float) -> None:
        """Declare the current position to be ``user``: changes the offset, not the hardware."""
        await self.read_position()
        await self._save(offset=float(user) - self.sign * self._dial)
        for callback in tuple(self._position_callbacks):
            callback(self.position)

    async def set_dial(self, dial: float) -> None:
        """Load ``dial`` into the controller (the offset is kept, so the user position follows)."""
        await self._ensure_connected()
        if self._motion is not None:
            raise AxisBusyError(self.name, "cannot set the dial position while moving")
        await self.controller.set_position(self, float(dial) * self.steps_per_unit)
        await self.read_position()
        await self._persist_dial()

    async def reset_settings(self) -> None:
        """Back to the configuration's values (offset, velocity, acceleration, limits)."""
        await self._ensure_connected()
        if self._store is not None:
            await self._store.reset("offset", "velocity", "acceleration", "low_limit", "high_limit")
            self._apply(self._store.values)
        else:
            self._apply(AxisSettings.from_parameters(self.params))
        await self.controller.set_velocity(self, self._velocity * abs(self.steps_per_unit))
        await self.controller.set_acceleration(self, self._acceleration * abs(self.steps_per_unit))

    # ------------------------------------------------------------------ motion

    def check_limits(self, user_target: float) -> None:
        """Raise :class:`LimitError` if a move to ``user_target`` would leave the limits."""
        self._plan(user_target)

    def _plan(self, user_target: float) -> list[float]:
        """The dial positions a move to ``user_target`` goes through, limits checked."""
        try:
            target = float(user_target)
        except (TypeError, ValueError):
            raise DeviceError(
                self.name, f"target position must be a number, not {user_target!r}"
            ) from None
        if not math.isfinite(target):
            raise DeviceError(self.name, f"target position must be finite, not {target}")
        dial = (target - self.offset) * self.sign
        plan = [dial]
        backlash = self.backlash
        if backlash and (dial - self._dial) * backlash < 0:
            plan.insert(0, dial - backlash)
        low, high = self._low_dial, self._high_dial
        if low is not None or high is not None:
            for step in plan:
                if (low is not None and step < low) or (high is not None and step > high):
                    ulow, uhigh = self.limits
                    what = "" if step == dial else f" (backlash approach from {step:g} dial)"
                    raise LimitError(
                        self.name,
                        f"move to {target:g} refused: outside the software limits "
                        f"[{ulow:g}, {uhigh:g}]{what}; nothing moved",
                    )
        return plan

    # Moving several axes together (a Group, a calculation controller) takes the steps of
    # ``move`` one by one, for every axis, before one controller command starts them all:
    # reserve_move, next_leg (the controller command), release_move if that failed;
    # prepare_stop and wait_stopped around a stop; ``motion`` says which move is running.

    @property
    def motion(self) -> MotionInProgress | None:
        """The move in progress, or None (its identity tells a caller whether its move runs)."""
        return self._motion

    def reserve_move(self, user_target: float) -> MotionInProgress:
        """Check and reserve a move (no I/O): the first step of ``move`` and group moves."""
        if self._motion is not None:
            raise AxisBusyError(self.name, "is already moving; stop it or wait for it")
        if self._state is AxisState.DISABLED:
            raise AxisFaultError(self.name, "is DISABLED; enable it on its controller first")
        plan = self._plan(user_target)
        motion = MotionInProgress(plan)
        self._motion = motion
        return motion

    def next_leg(self, motion: MotionInProgress) -> Motion:
        """The controller command of the reserved move's next dial target; the axis is
        MOVING from now on (the caller hands the command to the controller)."""
        dial = motion.plan.pop(0)
        spu = self.steps_per_unit
        self._set_state(AxisState.MOVING)
        return Motion(self, dial * spu, (dial - self._dial) * spu)

    def release_move(self, motion: MotionInProgress) -> None:
        """Give up a reserved move that did not start (or has stopped)."""
        if self._motion is motion:
            self._motion = None
            motion.finish()

    async def move(self, target: float, wait: bool = True) -> None:
        """Move to the user position ``target``; with ``wait=False`` call :meth:`wait_move`."""
        await self._ensure_connected()
        motion = self.reserve_move(target)
        try:
            await self._start_next(motion)
        except BaseException:
            # The start command may have reached the controller before the error or the
            # cancellation: stop, so that the motor never runs unwatched.
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + STOP_DEADLINE
                await self._stop_after_error()
            self.release_move(motion)
            raise
        if wait:
            await self.wait_move()

    async def move_relative(self, delta: float, wait: bool = True) -> None:
        """Move by ``delta`` user units from the current position."""
        await self.move(self.position + float(delta), wait=wait)

    rmove = move_relative

    async def _start_next(self, motion: MotionInProgress) -> None:
        await self.controller.start_one(self.next_leg(motion))

    async def wait_move(self) -> None:
        """Wait for the running move to end (no-op if none); raise what went wrong."""
        motion = self._motion
        if motion is None:
            return
        if motion.polling:
            await motion.wait()
            if motion.error is not None:
                raise motion.error
            return
        motion.polling = True
        try:
            await self._follow(motion)
        except BaseException as exc:
            motion.error = exc
            if not isinstance(exc, DeviceError):
                with anyio.CancelScope(shield=True) as scope:
                    scope.deadline = anyio.current_time() + STOP_DEADLINE
                    await self._stop_after_error()
            raise
        finally:
            self._motion = None
            motion.finish()

    async def _follow(self, motion: MotionInProgress) -> None:
        controller = self.controller
        spu = self.steps_per_unit
        while True:
            state = await controller.state(self)
            while state is AxisState.MOVING:
                if self._position_callbacks:
                    self._set_dial(await controller.read_position(self) / spu)
                await controller.wait_motion_update(self)
                state = await controller.state(self)
            self._set_dial(await controller.read_position(self) / spu)
            if motion.plan and not motion.stopped and state is AxisState.READY:
                await self._start_next(motion)
                continue
            break
        self._set_state(state)
        await self._persist_dial()
        if state is AxisState.LIMPOS or state is AxisState.LIMNEG:
            side = "positive" if state is AxisState.LIMPOS else "negative"
            raise LimitSwitchError(
                self.name,
                f"stopped on its {side} limit switch at {self.position:g} "
                f"(target was {self.dial_to_user(motion.final_dial):g})",
            )
        if state is AxisState.FAULT or state is AxisState.DISABLED:
            raise AxisFaultError(
                self.name, f"controller reports {state.value} at {self.position:g}"
            )
        if self.encoder is not None and not motion.stopped:
            encoder = await controller.read_encoder(self) / self.encoder.steps_per_unit
            error = encoder - motion.final_dial
            if abs(error) > self.encoder.tolerance:
                self._set_state(AxisState.FAULT)
                raise EncoderMismatchError(
                    self.name,
                    f"encoder reads {encoder:g} (dial) after a move to {motion.final_dial:g} "
                    f"(dial): off by {error:g}, more than the tolerance "
                    f"{self.encoder.tolerance:g}. Check the motor (lost steps?) and re-read "
                    "its position",
                )

    async def _stop_after_error(self) -> None:
        try:
            await self.controller.stop(self)
            await self._settle()
        except Exception as exc:
            log.warning("could not stop %s after an error: %s", self.name, exc)

    async def _settle(self) -> None:
        """Poll until the controller no longer reports MOVING; refresh position and state."""
        controller = self.controller
        state = await controller.state(self)
        while state is AxisState.MOVING:
            await controller.wait_motion_update(self)
            state = await controller.state(self)
        self._set_dial(await controller.read_position(self) / self.steps_per_unit)
        self._set_state(state)

    async def stop(self) -> None:
        """Stop the axis and wait until it has stopped."""
        await self._ensure_connected()
        self.prepare_stop()
        await self.controller.stop(self)
        await self.wait_stopped()

    def prepare_stop(self) -> None:
        """No backlash approach nor encoder check after a stop."""
        motion = self._motion
        if motion is not None:
            motion.stopped = True
            motion.plan.clear()

    async def wait_stopped(self) -> None:
        """After the controller was told to stop: wait for the motion to end."""
        motion = self._motion
        if motion is not None and motion.polling:
            with anyio.CancelScope(shield=True):
                await motion.wait()
        elif motion is not None:
            try:
                await self._settle()
            finally:
                self.release_move(motion)
        else:
            await self._settle()

    async def home(self, direction: int | None = None) -> None:
        """Search the home switch (in ``direction`` +1/-1 if given; by default where the
        controller knows it is); the controller sets the dial there."""
        await self._ensure_connected()
        if self._motion is not None:
            raise AxisBusyError(self.name, "is already moving; stop it or wait for it")
        motion = MotionInProgress([])
        motion.stopped = True  # no encoder check, no backlash
        self._motion = motion
        motion.polling = True
        try:
            self._set_state(AxisState.MOVING)
            await self.controller.home(
                self, None if direction is None else (1 if direction >= 0 else -1)
            )
            await self._follow(motion)
        except BaseException as exc:
            motion.error = exc
            if not isinstance(exc, DeviceError):
                with anyio.CancelScope(shield=True):
                    await self._stop_after_error()
            raise
        finally:
            self._motion = None
            motion.finish()

    # ------------------------------------------------------------------ display

    def __info__(self) -> str:
        low, high = self.limits
        lines = [
            f"axis {self.name} on controller {self.controller.name}",
            f"  state        {self._state.value}",
            f"  user         {self.position:g} {self.unit or ''}".rstrip(),
            f"  dial         {self._dial:g}",
            f"  offset       {self.offset:g}   sign {self.sign}",
            f"  limits       [{low:g}, {high:g}] (user)",
            f"  velocity     {self._velocity:g}   acceleration {self._acceleration:g}",
            f"  steps/unit   {self.steps_per_unit:g}   backlash {self.backlash:g}",
        ]
        if self.encoder is not None:
            lines.append(
                f"  encoder      {self.encoder.steps_per_unit:g} steps/unit, "
                f"tolerance {self.encoder.tolerance:g}"
            )
        if self.position_mismatch:
            lines.append(f"  start-up     {self.position_mismatch}")
        return "\n".join(lines)
