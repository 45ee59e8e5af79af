"""blissng.acquisition: the chain of masters and slaves that makes the points of a scan.

See docs/acquisition.md. The chain knows nothing of Redis: nodes emit into
:class:`~blissng.acquisition.channels.Channel` objects that the data layer subscribes to.
"""

from .chain import AcquisitionChain
from .channels import REFERENCE_DTYPE, Channel, ChannelSink, ChannelSpec
from .control import PauseCondition, PointCallback, ScanControl, ScanState
from .errors import AcquisitionError, ChainConfigurationError, ScanAborted
from .masters import HardwareTriggerMaster, MotorStepMaster, SoftwareTimerMaster
from .node import AcquisitionMaster, AcquisitionNode, AcquisitionSlave, TriggerType, fan_out
from .presets import ChainPreset
from .slaves import AcquirableSlave

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
    "HardwareTriggerMaster",
    "MotorStepMaster",
    "PauseCondition",
    "PointCallback",
    "ScanAborted",
    "ScanControl",
    "ScanState",
    "SoftwareTimerMaster",
    "TriggerType",
    "fan_out",
]
