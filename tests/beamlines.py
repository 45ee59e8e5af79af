"""Small beamline configurations shared by tests (YAML text for ``write_config``)."""

# Two zero-motion-time motors and a counter peaking at m1 = 1.0: fast, no simulator process.
MOCKUP_BEAMLINE = """
- name: motors
  class: MockupController
  instant: true
  axes:
    - name: m1
    - name: m2
- name: sim
  class: SimCounterController
  sampling_period: 0.001
  counters:
    - name: diode
      motor: $m1
      center: 1.0
      fwhm: 0.5
      height: 100
      nsamples: 1
"""
