"""blissng.config: YAML tree -> validated parameters -> objects, and its error messages."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from blissng.config import (
    CLASSES,
    Config,
    ConfigContext,
    ConfigError,
    ConfigModel,
    Configurable,
)

HERE = __name__  # classes below are named "test_config:Controller" in the YAML

BUILDS: list[str] = []


class Controller:
    """A controller with axes as children (like a motor controller)."""

    class Parameters(ConfigModel):
        host: str
        port: int = 5000
        axes: list[dict[str, Any]] = Field(default_factory=list)

    def __init__(self, name: str, params: Parameters, context: ConfigContext) -> None:
        self.name = name
        self.params = params
        self.context = context
        self.axes = {axis["name"]: Axis(axis["name"], self, axis) for axis in params.axes}

    @classmethod
    def from_config(cls, name: str, params: Parameters, context: ConfigContext) -> Controller:
        BUILDS.append(name)
        return cls(name, params, context)

    def child(self, name: str) -> Axis:
        return self.axes[name]


class Axis:
    def __init__(self, name: str, controller: Controller, config: dict[str, Any]) -> None:
        self.name = name
        self.controller = controller
        self.config = config


class Counter(Configurable):
    class Parameters(ConfigModel):
        controller: Controller
        unit: str = "V"
        gain: float = 1.0

    def __init__(self, name: str, controller: Controller, unit: str, gain: float) -> None:
        self.name = name
        self.controller = controller
        self.unit = unit
        self.gain = gain


class Group(Configurable):
    class Parameters(ConfigModel):
        members: list[Any]
        label: str = ""

    def __init__(self, name: str, members: list[Any], label: str) -> None:
        self.name = name
        self.members = members
        self.label = label


class Broken:
    class Parameters(BaseModel):
        pass

    @classmethod
    def from_config(cls, name: str, params: BaseModel, context: ConfigContext) -> Broken:
        raise RuntimeError("the device driver is not installed")


class NoParameters:
    @classmethod
    def from_config(cls, name: str, params: Any, context: ConfigContext) -> NoParameters:
        return cls()


class Leaf(Configurable):
    """Has children in the YAML but no child() method."""

    class Parameters(ConfigModel):
        items: list[dict[str, Any]] = Field(default_factory=list)

    def __init__(self, name: str, items: list[dict[str, Any]]) -> None:
        self.name = name


MOTORS = f"""
- name: ctrl
  class: {HERE}:Controller
  host: localhost
  axes:
    - name: m1
      velocity: 2
    - name: m2
- name: diode
  class: {HERE}:Counter
  controller: $ctrl
  gain: 2.5
"""


@pytest.fixture(autouse=True)
def _clear_builds() -> None:
    BUILDS.clear()


def messages(config: Config) -> list[str]:
    return [str(e) for e in config.errors]


# ---------------------------------------------------------------------------- building


def test_objects_are_built_lazily_once_with_references(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    config = Config(config_dir)
    assert config.names() == ["ctrl", "m1", "m2", "diode"]
    assert BUILDS == []  # nothing built by reading
    diode = config.get("diode")
    assert BUILDS == ["ctrl"]
    assert diode.controller is config.get("ctrl")
    assert diode.gain == 2.5 and diode.unit == "V"
    assert config.get("diode") is diode and BUILDS == ["ctrl"]
    assert config.errors == []


def test_children_come_from_their_parent(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    config = Config(config_dir)
    m1 = config.get("m1")
    assert isinstance(m1, Axis) and m1.controller is config.get("ctrl")
    assert m1.config == {"name": "m1", "velocity": 2}
    assert config.get("m2") is config.get("ctrl").child("m2")
    assert config.info("m1").parent == "ctrl" and config.info("ctrl").children == ["m1", "m2"]
    assert config.get("ctrl").context.children == ["m1", "m2"]


def test_references_inside_lists_and_inline_objects(write_config, config_dir):
    write_config(
        "groups.yaml",
        f"""
        name: mg
        class: {HERE}:Group
        label: $$not_a_reference
        members:
          - $diode
          - name: inline_counter
            class: {HERE}:Counter
            controller: $ctrl
        """,
    )
    write_config("sub/dir/motors.yml", MOTORS)
    config = Config(config_dir)
    mg = config.get("mg")
    assert mg.members[0] is config.get("diode")
    assert mg.members[1] is config.get("inline_counter")
    assert mg.label == "$not_a_reference"
    assert set(config.names()) == {"mg", "inline_counter", "ctrl", "m1", "m2", "diode"}


def test_short_names_from_the_registry(write_config, config_dir, monkeypatch):
    monkeypatch.setitem(CLASSES, "TestController", f"{HERE}:Controller")
    write_config("c.yml", "name: c1\nclass: TestController\nhost: h\n")
    assert isinstance(Config(config_dir).get("c1"), Controller)


def test_dotted_import_path_also_works(write_config, config_dir):
    write_config("c.yml", f"name: c1\nclass: {HERE}.Controller\nhost: h\n")
    assert isinstance(Config(config_dir).get("c1"), Controller)


def test_hidden_files_and_other_suffixes_are_ignored(write_config, config_dir):
    write_config(".hidden.yml", "name: x\nclass: nowhere:X\n")
    write_config(".git/objects.yml", "name: y\nclass: nowhere:Y\n")
    write_config("notes.txt", "not yaml: [")
    write_config("empty.yml", "")
    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\nhost: h\n")
    config = Config(config_dir)
    assert config.names() == ["c1"] and config.errors == []


def test_reload_sees_changes_and_returns_old_objects(write_config, config_dir):
    path = write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\nhost: a\n")
    config = Config(config_dir)
    old = config.get("c1")
    path.write_text(f"name: c1\nclass: {HERE}:Controller\nhost: b\n")
    assert config.get("c1") is old  # built once until reload
    dropped = config.reload()
    assert dropped == {"c1": old}
    assert config.get("c1").params.host == "b"


def test_concurrent_gets_from_threads_build_once(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    config = Config(config_dir)
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(config.get("diode"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert BUILDS == ["ctrl"]


@pytest.mark.anyio
async def test_open_and_areload_read_in_a_thread(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    config = await Config.open(config_dir)
    assert config.get("m1").name == "m1"
    assert set(await config.areload()) == {"ctrl", "m1"}


def test_build_all_builds_the_good_and_lists_the_bad(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config("bad.yml", f"name: bad\nclass: {HERE}:Broken\n")
    config = Config(config_dir)
    built = config.build_all()
    assert set(built) == {"ctrl", "m1", "m2", "diode"}
    assert [e.object for e in config.errors] == ["bad"]
    assert dict(config.objects()).keys() == built.keys()


# ---------------------------------------------------------------------------- sections


def test_sections_are_plain_values_with_lines(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config(
        "sessions.yml",
        """
        # sessions of the beamline
        sessions:
          - name: demo
            objects: [m1, diode]
          - name: other
            setup: other_setup.py
        workflows:
          align: {graph: align.json}
        """,
    )
    config = Config(config_dir)
    sessions = config.section("sessions")
    assert sessions is not None
    assert sessions.value == [
        {"name": "demo", "objects": ["m1", "diode"]},
        {"name": "other", "setup": "other_setup.py"},
    ]
    assert type(sessions.value[0]["objects"][0]) is str
    assert (sessions.location.file.name, sessions.location.line) == ("sessions.yml", 2)
    assert sessions.location_of(1, "setup").line == 6
    assert config.section("workflows").value == {"align": {"graph": "align.json"}}
    assert config.section("nothing") is None
    assert set(config.section_keys()) == {"sessions", "workflows"}
    # session entries have names but no class: they are section data, not objects
    assert "demo" not in config.names() and config.errors == []
    with pytest.raises(ConfigError, match=r"sessions.yml:3: object 'demo': is not an object"):
        config.get("demo")


def test_objects_inside_sections_are_found(write_config, config_dir):
    write_config(
        "beamline.yml",
        f"""
        controllers:
          - name: ctrl
            class: {HERE}:Controller
            host: h
            axes: [{{name: m1}}]
        """,
    )
    config = Config(config_dir)
    assert config.names() == ["ctrl", "m1"]
    assert config.get("m1").controller is config.get("ctrl")
    assert config.section("controllers").value[0]["class"] == f"{HERE}:Controller"


def test_a_section_in_two_files_is_an_error(write_config, config_dir):
    write_config("a.yml", "sessions: [{name: a}]\n")
    write_config("b.yml", "sessions: [{name: b}]\n")
    config = Config(config_dir)
    assert [s.value for s in config.sections("sessions")] == [[{"name": "a"}], [{"name": "b"}]]
    with pytest.raises(ConfigError, match=r"section 'sessions' is defined 2 times .*a.yml:1"):
        config.section("sessions")


# ---------------------------------------------------------------------------- errors


def the_error(config: Config, name: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.get(name)
    return info.value


def test_duplicate_names_name_both_places_and_spare_the_others(write_config, config_dir):
    write_config("a.yml", MOTORS)
    write_config("b.yml", f"- name: diode\n  class: {HERE}:Counter\n  controller: $ctrl\n")
    config = Config(config_dir)
    error = the_error(config, "diode")
    assert error.object == "diode" and error.file.name == "b.yml" and error.line == 1
    assert "duplicate name, defined 2 times" in str(error)
    assert "a.yml:8" in str(error) and "b.yml:1" in str(error)
    assert config.get("m1").name == "m1"
    assert messages(config) == [str(error)]


def test_duplicate_child_names(write_config, config_dir):
    write_config("a.yml", MOTORS)
    write_config("b.yml", f"name: c2\nclass: {HERE}:Controller\nhost: h\naxes: [{{name: m1}}]\n")
    config = Config(config_dir)
    assert "duplicate name" in str(the_error(config, "m1"))
    assert config.get("m2").name == "m2"


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("NoSuchClass", "unknown class 'NoSuchClass'.*registered short name"),
        ("no_such_module:Thing", "cannot import module 'no_such_module'"),
        (f"{HERE}:Nope", f"module '{HERE}' has no 'Nope'"),
        (f"{HERE}:HERE", "which is not a class"),
        (f"{HERE}:NoParameters", "has no 'Parameters' pydantic model"),
    ],
)
def test_unknown_class(write_config, config_dir, class_name, expected):
    write_config("motors.yml", MOTORS)
    write_config("x.yml", f"# comment\nname: x\nclass: {class_name}\n")
    config = Config(config_dir)
    error = the_error(config, "x")
    assert (error.file.name, error.line, error.object, error.field) == ("x.yml", 3, "x", "class")
    assert str(error).startswith(f"{error.location}: object 'x', field 'class': ")
    assert re.search(expected, str(error)), str(error)
    assert config.get("diode").name == "diode"


def test_unknown_short_name_suggests_a_close_one(write_config, config_dir, monkeypatch):
    monkeypatch.setitem(CLASSES, "SimMotorController", f"{HERE}:Controller")
    write_config("x.yml", "name: x\nclass: SimMotorControler\n")
    assert "did you mean 'SimMotorController'" in str(the_error(Config(config_dir), "x"))


def test_missing_parameter(write_config, config_dir):
    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\nport: 1\n")
    error = the_error(Config(config_dir), "c1")
    assert (error.object, error.field, error.line) == ("c1", "host", 1)
    assert str(error).endswith("object 'c1', field 'host': missing required parameter")


def test_wrongly_typed_parameter_points_at_its_line(write_config, config_dir):
    write_config(
        "c.yml",
        f"""
        name: c1
        class: {HERE}:Controller
        host: h

        port: fast
        """,
    )
    error = the_error(Config(config_dir), "c1")
    assert (error.file.name, error.line, error.object, error.field) == ("c.yml", 5, "c1", "port")
    assert "valid integer" in error.problem and "(got 'fast')" in error.problem


def test_several_wrong_parameters_are_all_reported(write_config, config_dir):
    write_config(
        "c.yml",
        f"""
        name: c1
        class: {HERE}:Controller
        port: fast
        axes:
          - name: m1
          - 3
        """,
    )
    error = the_error(Config(config_dir), "c1")
    text = str(error)
    assert error.field == "host" and "missing required parameter" in text
    assert "also field 'port' (line 3)" in text
    assert "also field 'axes[1]' (line 6)" in text


def test_wrongly_typed_reference(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config("d.yml", f"name: d2\nclass: {HERE}:Counter\ncontroller: $diode\n")
    error = the_error(Config(config_dir), "d2")
    assert (error.field, error.line) == ("controller", 3)
    assert "instance of Controller" in str(error)


def test_unknown_parameter_suggests_the_right_one(write_config, config_dir):
    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\nhost: h\nprot: 1\n")
    error = the_error(Config(config_dir), "c1")
    assert (error.field, error.line) == ("prot", 4)
    assert "unknown parameter; did you mean 'port'?" in str(error)


def test_dangling_reference(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config(
        "mg.yml",
        f"name: mg\nclass: {HERE}:Group\nmembers:\n  - $diode\n  - $diod2\n",
    )
    config = Config(config_dir)
    error = the_error(config, "mg")
    assert (error.file.name, error.line) == ("mg.yml", 5)
    assert (error.object, error.field) == ("mg", "members[1]")
    assert "reference '$diod2' names no object" in str(error)
    assert "did you mean 'diode'" in str(error)
    assert config.get("diode").name == "diode"


def test_reference_to_a_failing_object_says_why(write_config, config_dir):
    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\nport: 1\n")
    write_config("d.yml", f"name: d1\nclass: {HERE}:Counter\ncontroller: $c1\n")
    config = Config(config_dir)
    error = the_error(config, "d1")
    assert (error.object, error.field, error.line) == ("d1", "controller", 3)
    assert "'$c1' cannot be built" in str(error) and "missing required parameter" in str(error)
    assert {e.object for e in config.errors} == {"c1", "d1"}


def test_reference_cycle(write_config, config_dir):
    write_config(
        "cycle.yml",
        f"""
        - name: a
          class: {HERE}:Group
          members: [$b]
        - name: b
          class: {HERE}:Group
          members: [$c]
        - name: c
          class: {HERE}:Group
          members: [$a]
        - name: ok
          class: {HERE}:Group
          members: []
        """,
    )
    config = Config(config_dir)
    error = the_error(config, "a")
    assert "reference cycle: a -> b -> c -> a" in str(error)
    assert config.get("ok").members == []
    # the object closing the cycle carries the precise location
    c_error = the_error(config, "c")
    assert (c_error.field, c_error.line) == ("members[0]", 9)


def test_self_reference_is_a_cycle(write_config, config_dir):
    write_config("a.yml", f"name: a\nclass: {HERE}:Group\nmembers: [$a]\n")
    error = the_error(Config(config_dir), "a")
    assert "reference cycle: a -> a" in str(error) and error.line == 3


def test_invalid_yaml_names_file_and_line_and_spares_other_files(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    write_config("bad.yml", "- name: x\n  class: [unclosed\n- name: y\n")
    config = Config(config_dir)
    invalid, y_has_no_class = config.errors
    assert invalid.file.name == "bad.yml" and invalid.line == 2
    assert "invalid YAML" in str(invalid) and "lines 1-2 (objects x) are not loaded" in str(invalid)
    assert y_has_no_class.object == "y"  # the next item was read: it is reported on its own
    assert config.get("diode").name == "diode"


def test_a_yaml_error_costs_only_the_item_it_is_in(write_config, config_dir):
    """Issue 13, finding 10: one syntax error dropped every object of its file."""
    write_config(
        "motors.yml",
        f"""
        # motors of the hutch
        - name: before
          class: {HERE}:Controller
          host: a
        - name: broken
          class: {HERE}:Controller
          host: [b
        - name: after
          class: {HERE}:Controller
          host: c
          axes:
            - name: a1
        """,
    )
    write_config("group.yml", f"name: g\nclass: {HERE}:Group\nmembers: [$broken]\n")
    config = Config(config_dir)
    [invalid, *_] = config.errors
    assert re.fullmatch(
        r".*motors\.yml:7: invalid YAML: .*; lines 5-7 \(objects broken\) are not loaded, "
        r"the rest of the file is",
        str(invalid),
    ), str(invalid)
    assert config.get("before").params.host == "a" and config.get("a1").name == "a1"
    assert config.info("after").location.line == 8  # lines as in the file
    with pytest.raises(ConfigError, match=r"'broken' is not loaded: its lines are not valid YAML"):
        config.get("g")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: x\nclass: [unclosed\n", 3),  # one object: its keys mean nothing apart
        ("- name: x\n  class: A\n---\n- name: y\n  class: A\n", 3),  # two documents
    ],
)
def test_a_file_whose_error_is_not_in_one_item_loads_none_of_it(
    write_config, config_dir, text, line
):
    write_config("bad.yml", text)
    config = Config(config_dir)
    [error] = config.errors
    assert error.line == line and "invalid YAML" in str(error) and "rest" not in str(error)
    assert config.names() == []


def test_sections_of_a_file_with_a_yaml_error_are_kept(write_config, config_dir):
    write_config("sessions.yml", "sessions:\n  - name: demo\nworkflows: {a: [1\n")
    config = Config(config_dir)
    [error] = config.errors
    assert error.line == 3 and "lines 3-3 are not loaded" in str(error)
    assert config.section("sessions").value == [{"name": "demo"}]


def test_duplicate_key_in_a_mapping_is_invalid_yaml(write_config, config_dir):
    write_config("bad.yml", "name: x\nclass: A\nname: y\n")
    [error] = Config(config_dir).errors
    assert error.line == 3 and 'duplicate key "name"' in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nhost: h\n", "object 'x': has a name but no class"),
        ("- name: x\n- 3\n", "item 1 of a top-level list is not an object"),
        ("just a string\n", "expected a mapping"),
        (f"class: {HERE}:Controller\nhost: h\n", "has a class but no name"),
        (f"name: 3x\nclass: {HERE}:Controller\n", "name '3x' is not a valid Python identifier"),
        ("name: x\nclass: [A]\n", "class must be a string"),
    ],
)
def test_malformed_objects(write_config, config_dir, text, expected):
    write_config("motors.yml", MOTORS)
    write_config("bad.yml", text)
    config = Config(config_dir)
    assert any(expected in m and "bad.yml:" in m for m in messages(config)), messages(config)
    assert config.get("diode").name == "diode"


def test_from_config_failure_is_wrapped(write_config, config_dir):
    write_config("x.yml", f"name: x\nclass: {HERE}:Broken\n")
    error = the_error(Config(config_dir), "x")
    assert "Broken.from_config failed: RuntimeError: the device driver is not installed" in str(
        error
    )
    assert isinstance(error.__cause__, RuntimeError)
    assert the_error(Config(config_dir), "x").line == 1


def test_child_of_a_class_without_child_method(write_config, config_dir):
    write_config("x.yml", f"name: x\nclass: {HERE}:Leaf\nitems:\n  - name: sub\n")
    error = the_error(Config(config_dir), "sub")
    assert (error.object, error.line) == ("sub", 4)
    assert "inside 'x', whose class has no child(name) method" in str(error)


def test_child_of_a_failing_parent(write_config, config_dir):
    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\naxes: [{{name: m1}}]\n")
    error = the_error(Config(config_dir), "m1")
    assert "its parent 'c1' cannot be built" in str(error)


def test_unknown_name(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    error = the_error(Config(config_dir), "diod")
    assert "no object named 'diod'" in str(error) and "did you mean 'diode'" in str(error)


def test_bad_directory(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config(tmp_path / "nope")
    (tmp_path / "file.yml").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        Config(tmp_path / "file.yml")


def test_context_error_points_at_a_field(write_config, config_dir):
    class_path = f"{HERE}:Validating"
    write_config("v.yml", f"name: v\nclass: {class_path}\nlimits: [5, 1]\n")
    error = the_error(Config(config_dir), "v")
    assert (error.field, error.line) == ("limits", 3)
    assert str(error).endswith("object 'v', field 'limits': low limit above high limit")


class Validating:
    class Parameters(ConfigModel):
        limits: tuple[float, float]

    @classmethod
    def from_config(cls, name: str, params: Any, context: ConfigContext) -> Validating:
        low, high = params.limits
        if low > high:
            raise context.error("low limit above high limit", "limits")
        return cls()


def test_config_error_survives_pickling(write_config, config_dir):
    import pickle

    write_config("c.yml", f"name: c1\nclass: {HERE}:Controller\n")
    error = the_error(Config(config_dir), "c1")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.field == "host"


class Unions:
    class Parameters(ConfigModel):
        mode: int | Literal["auto"] = "auto"
        items: list[int | str] = Field(default_factory=list)

    @classmethod
    def from_config(cls, name: str, params: Any, context: ConfigContext) -> Unions:
        return cls()


def test_union_errors_name_the_yaml_field_once(write_config, config_dir):
    write_config("u.yml", f"name: u\nclass: {HERE}:Unions\nmode: fast\nitems:\n  - 1\n  - null\n")
    error = the_error(Config(config_dir), "u")
    assert (error.field, error.line) == ("mode", 3)
    assert "valid integer" in error.problem and "Input should be 'auto'" in error.problem
    assert "also field 'items[1]' (line 6)" in error.problem
    assert "mode.int" not in str(error) and "items[1].str" not in str(error)


# ---------------------------------------------------------------------------- properties


class Anything(Configurable):
    class Parameters(ConfigModel):
        data: Any = None

    def __init__(self, name: str, data: Any) -> None:
        self.name = name
        self.data = data


_keys = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda k: k not in ("name", "class")
)
_leaves = st.one_of(st.integers(-5, 5), st.sampled_from(["text", "$$dollar", "1.5x"]))
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4),
        st.dictionaries(_keys, children, min_size=1, max_size=4),
    ),
    max_leaves=25,
)


def _leaf_paths(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(tree, list):
        return [p for i, v in enumerate(tree) for p in _leaf_paths(v, (*path, i))]
    return [path]


def _replaced(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[head] = _replaced(tree[head], tuple(rest), value)
    return copy


@settings(max_examples=25)
@given(tree=_trees, data=st.data())
def test_a_dangling_reference_anywhere_is_located_exactly(tmp_path_factory, tree, data):
    """Whatever the nesting, the error names the field path and the line of the reference."""
    from ruamel.yaml import YAML

    paths = _leaf_paths(tree)
    target = data.draw(st.sampled_from(paths))
    tree = _replaced(tree, target, "$nobody_here")
    directory = tmp_path_factory.mktemp("prop")
    yaml = YAML()
    yaml.default_flow_style = False
    with open(directory / "obj.yml", "w") as stream:
        yaml.dump({"name": "obj", "class": f"{HERE}:Anything", "data": tree}, stream)
    lines = (directory / "obj.yml").read_text().splitlines()
    [expected_line] = [i + 1 for i, line in enumerate(lines) if "$nobody_here" in line]
    error = the_error(Config(directory), "obj")
    assert error.line == expected_line, (lines, error)
    expected_field = "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in target)
    assert error.field == expected_field
    assert "reference '$nobody_here' names no object" in error.problem


@settings(max_examples=20)
@given(tree=_trees)
def test_plain_values_come_through_unchanged(tmp_path_factory, tree):
    from ruamel.yaml import YAML

    directory = tmp_path_factory.mktemp("prop")
    yaml = YAML()
    with open(directory / "obj.yml", "w") as stream:
        yaml.dump({"name": "obj", "class": f"{HERE}:Anything", "data": tree}, stream)
    expected = _replaced_dollars(tree)
    assert Config(directory).get("obj").data == expected


def _replaced_dollars(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _replaced_dollars(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_replaced_dollars(v) for v in tree]
    return tree[1:] if isinstance(tree, str) and tree.startswith("$$") else tree


def test_a_reference_to_section_data_says_it_has_no_class(write_config, config_dir):
    write_config("s.yml", "sessions:\n  - name: demo\n")
    write_config("g.yml", f"name: g\nclass: {HERE}:Group\nmembers: [$demo]\n")
    error = the_error(Config(config_dir), "g")
    assert (error.field, error.line) == ("members[0]", 3)
    assert "reference '$demo' names no object: 'demo' (" in str(error)
    assert "s.yml:2) has no class" in str(error)


def test_a_file_that_is_not_text_is_reported(write_config, config_dir):
    write_config("motors.yml", MOTORS)
    (config_dir / "binary.yml").write_bytes(b"\xff\xfe\x00name: x\n")
    config = Config(config_dir)
    [error] = config.errors
    assert error.file.name == "binary.yml" and "cannot read" in str(error)
    assert config.get("diode").name == "diode"
