"""Sessions described in the configuration's ``sessions:`` section: validation with file, line
and field, setup paths relative to the YAML file, and the sessions built from it."""

from __future__ import annotations

import pytest

from blissng.config import Config, ConfigError
from blissng.scans import close_shared_clients
from blissng.session import session_specs, sessions_from_config
from test_session import CONFIG

pytestmark = pytest.mark.anyio


async def test_sessions_section_builds_working_sessions(write_config, config_dir, redis_urls,
                                                        tmp_path):  # fmt: skip
    write_config("beamline.yml", CONFIG)
    write_config(
        "sessions/sessions.yml",
        f"""
        sessions:
          - name: demo
            objects: [m1, sim, MG2]
            setup: demo_setup.py
            scan_saving: {{base_path: {tmp_path}/data, proposal: blc123}}
            workflows: false
          - name: alignment
            workflows: false
        """,
    )
    write_config("sessions/demo_setup.py", "mv(m1, 0.5)\n")
    config = Config(config_dir)
    specs = session_specs(config)
    assert [s.name for s in specs] == ["demo", "alignment"]
    assert specs[0].setup == config_dir / "sessions" / "demo_setup.py"
    demo, alignment = sessions_from_config(config, redis_urls)
    try:
        async with demo:
            assert demo.setup_error is None and demo.namespace["m1"].position == 0.5
            assert set(demo.objects) == {"m1", "sim", "MG2"} and demo.active_mg.name == "MG2"
            assert "m2" not in demo.namespace
            scan = await demo.execute("ascan(m1, 0, 1, 2, 0)")
            assert "/blc123/" in scan.path and scan.channels[-1] == "sim:diode"
        async with alignment:
            assert "m2" in alignment.namespace and "MG1" in alignment.namespace
    finally:
        await close_shared_clients()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sessions: {name: demo}", "is a list of sessions"),
        ("sessions:\n  - name: my demo", "must be an identifier"),
        ("sessions:\n  - name: demo\n  - name: demo", "defined twice"),
        ("sessions:\n  - name: demo\n    objects: [m9]", "exposes 'm9'"),
        ("sessions:\n  - name: demo\n    colour: blue", "colour"),
        ("sessions:\n  - name: demo\n    scan_saving: {basepath: /x}", "basepath"),
    ],
)
def test_bad_sessions_sections_name_file_and_problem(write_config, config_dir, text, match):
    write_config("beamline.yml", CONFIG)
    write_config("sessions.yml", text)
    with pytest.raises(ConfigError, match=match) as info:
        session_specs(Config(config_dir))
    assert "sessions.yml" in str(info.value)


async def test_a_missing_setup_file_is_reported_not_fatal(write_config, config_dir, tmp_path):
    write_config(
        "sessions.yml", "sessions:\n  - name: demo\n    setup: nowhere.py\n    workflows: false"
    )
    [session] = sessions_from_config(Config(config_dir), None)
    async with session:
        assert "cannot read the setup script" in session.setup_error
        assert await session.execute("1 + 1") == 2
