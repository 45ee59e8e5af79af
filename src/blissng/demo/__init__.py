"""The simulated demo beamline: its configuration and the simulators behind it.

``config_dir()`` is the directory of YAML files shipped in this package (``blissng demo`` and
the tests load it with ``blissng.config.Config``):

- ``motors.yml``: the simulated serial motor controller ``motors`` (axes ``m1``, ``m2``,
  slit blades ``s1l``/``s1h``, ``th`` with backlash, ``z`` with an encoder), the slit ``s1``
  (calculated ``s1g`` gap and ``s1o`` offset), and zero-motion-time in-process motors
  ``roby``/``robz``;
- ``counters.yml``: in-process counters peaking at known positions (``diode`` at m1 = 1.0,
  ``diode2`` at m2 = -0.5, ``fast`` at roby = 5, flat ``mon``), ``diode_stats`` (STATS mode)
  and the calculation counter ``diode_norm`` = diode / mon;
- ``detectors.yml``: the TCP scaler ``scaler`` (``timer``, ``smon``, ``det`` peaking at
  m1 = 0, ``sdiode`` at m1 = m2 = 0), its rates as sampling counters (``rates``:
  ``mon_rate``, ``det_rate``), the trigger box ``trigger``, the MCA ``mca`` (with regions of
  interest), the camera ``camera`` and the ``good`` and ``bad`` streaming devices.

How the configuration finds the simulators
------------------------------------------
Simulator servers get their pty paths and TCP ports at run time, so the YAML names them with
``url: sim://NAME`` (``motors``, ``scaler``, ``trigger``, ``mca``, ``camera``, ``good``,
``bad``: the standard names of ``blissng.sim.servers``). Such an address is resolved when
the device *connects*, not when the configuration is read (``blissng.sim.resolve_address``):

1. from the URLs registered in the process, which :func:`start_simulators` does:

   .. code-block:: python

       async with blissng.demo.start_simulators(run_dir) as urls:
           config = Config(blissng.demo.config_dir(), settings=store)
           await config.get("m1").move(1.0)

   (``run_simulators`` is the synchronous twin, for start-up code before the event loop
   runs and for pytest session fixtures);

2. else from the environment, ``BLISSNG_SIM_<NAME>=<url>`` (:func:`simulator_environment`
   gives them, for a child process whose simulators were started by its parent).

Objects that need no simulator (``roby``, ``simct``...) work without any of this.
"""

from blissng.sim import (
    SIMULATORS,
    run_simulators,
    simulator_environment,
    start_simulators,
)
from blissng.sim import demo_config_dir as config_dir

__all__ = [
    "SIMULATORS",
    "config_dir",
    "run_simulators",
    "simulator_environment",
    "start_simulators",
]
