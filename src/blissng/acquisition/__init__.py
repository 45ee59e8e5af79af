"""blissng.acquisition: the chain of masters and slaves that makes the points of a scan.

See docs/acquisition.md. The chain knows nothing of Redis: nodes emit into
:class:`~blissng.acquisition.Channel` objects that the data layer subscribes to.
"""

from ._chain import AcquisitionChain
from ._channels import REFERENCE_DTYPE, Channel, ChannelSink, ChannelSpec
from ._continuous import (
    ContinuousMotionMaster,
    LatchedAxis,
    LatchingTriggerMaster,
    LineMotion,
)
from ._control import PauseCondition, PointCallback, ScanControl, ScanState
from ._decoding import decode_in_thread, decode_limiter, decode_threads, warm_decode_threads
from ._errors import AcquisitionError, ChainConfigurationError
from ._masters import HardwareTriggerMaster, MotorStepMaster, SoftwareTimerMaster
from ._node import AcquisitionMaster, AcquisitionNode, AcquisitionSlave, TriggerType, fan_out
from ._presets import ChainPreset
from ._slaves import AcquirableSlave

__all__ = [
    "REFERENCE_DTYPE",
    "AcquirableSlave",
    "AcquisitionChain",
    "AcquisitionError",
    "AcquisitionMaster",
    "AcquisitionNode",
    "AcquisitionSlave",
    "ChainConfigurationError",
    "ChainPreset",
    "Channel",
    "ChannelSink",
    "ChannelSpec",
    "ContinuousMotionMaster",
    "HardwareTriggerMaster",
    "LatchedAxis",
    "LatchingTriggerMaster",
    "LineMotion",
    "MotorStepMaster",
    "PauseCondition",
    "PointCallback",
    "ScanControl",
    "ScanState",
    "SoftwareTimerMaster",
    "TriggerType",
    "decode_in_thread",
    "decode_limiter",
    "decode_threads",
    "fan_out",
    "warm_decode_threads",
]
