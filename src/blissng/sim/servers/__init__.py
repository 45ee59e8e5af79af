"""The simulator servers (a serial motor controller on a pty, TCP instruments, a bad device in
its own process): ``python -m blissng.sim.servers --spec SPEC`` runs a sim host, the process
that serves the simulators of one spec (docs/sim-protocols.md).

This package is the command; its API (:class:`~blissng.sim.SimHost`,
:func:`~blissng.sim.open_sim_host`, the specs and presets) is offered by :mod:`blissng.sim`.
"""

__all__: list[str] = []
