"""The shape of the code (docs/architecture.md): what the layers promise, checked on the source.

- No import cycle between the modules of one package: counting every import that runs (at
  module level or deferred into a function), not the ones under ``if TYPE_CHECKING:``. A
  deferred import that only hides a cycle is still a cycle.
- One error tree (docs/errors.md): every exception class of every module derives from
  ``BlissngError`` (but ``Aborted``, the stop), keeps its builtin kind, and no two share a
  name.
- The layers of docs/architecture.md: each package imports only the packages of the layers
  below it (its table, bottom-up, is read from the page, so the page and the code agree); the
  outer layers reach the inner ones through the session layer (the web imports no devices
  module, the shell no scans module).
- No module imports another package's private names: no ``_module`` of another package, no
  ``_name`` from another package's module or face; inside a package, a module may import its
  package's private modules but no ``_name`` of another module.
- No import of another package's module for a name that package's face (``__init__``,
  ``__all__``) offers: the face is the one door.
- The packages docs/architecture.md lists as keeping their modules private have only ``_*.py``
  modules beside a face with ``__all__``.
- No module reaches a private attribute (``obj._name``) it does not define: blissng's own
  modules offer named methods. A library's internals (aioca's channel caches, anyio's task
  bookkeeping, prompt_toolkit's handlers) are reached only with a comment on the line or just
  above saying "<library> internals" and why.
- No module over 500 lines unless its docstring says why it stays whole ("One module of").
- One helper for blocking calls (``blissng.threads.run_in_thread``): a direct
  ``to_thread.run_sync`` (or ``asyncio.to_thread``, ``run_in_executor``) anywhere else in
  ``src/`` carries a comment, on its line or just above, saying why not the helper.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import blissng
from blissng.errors import Aborted, BlissngError, leaf_exceptions, sole_exception

SOURCE = Path(blissng.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    modules: dict[str, tuple[Path, bool]] = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, skipping ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for s in node.orelse for n in _runtime_imports_of(s))
            continue
        yield from _runtime_imports_of(node)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _runtime_imports(node)


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            prefix = _from_target(node, name, is_package)
            for alias in node.names:
                candidate = f"{prefix}.{alias.name}"
                targets.add(candidate if candidate in modules else prefix)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _from_target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` in ``module`` names (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts[: len(parts) - node.level + is_package]
    return ".".join([*base, *([node.module] if node.module else [])])


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_inside_a_package():
    graph = _import_graph()
    # A package's __init__ re-exports its modules: edges to it are the package's face, not a
    # module of it (a module importing its own package's face is caught by Python itself).
    inside = {
        module: {
            target
            for target in targets
            if _package(target) == _package(module) and target != _package(module)
        }
        for module, targets in graph.items()
        if module != _package(module)
    }
    cycles = _cycles(inside)
    assert not cycles, "import cycles inside a package:\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_cycle_finder_finds_a_deferred_import_cycle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": {"a.x"}}
    assert _cycles(graph) == [["a.x", "a.y"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    import deferred\n"
    )
    names = {alias.name for node in _runtime_imports(tree) for alias in node.names}
    assert names == {"TYPE_CHECKING", "deferred"}


def _exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a blissng module (private modules too: what they
    raise may reach a user)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(blissng.__path__, "blissng."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_exception_derives_from_the_root_but_the_stop():
    classes = _exception_classes()
    assert len(classes) > 50  # the walk found the packages' errors
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not issubclass(c, BlissngError) and c is not Aborted
    ]
    assert not outside, f"exceptions outside the BlissngError tree: {outside}"


def test_one_name_per_meaning():
    names: dict[str, list[str]] = {}
    for cls in _exception_classes():
        names.setdefault(cls.__name__, []).append(cls.__module__)
    assert {name: where for name, where in names.items() if len(where) > 1} == {}


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("blissng.devices.LimitError", ValueError),
        ("blissng.devices.UnknownDeviceError", LookupError),
        ("blissng.devices.DeviceError", RuntimeError),
        ("blissng.comm.CommTimeout", TimeoutError),
        ("blissng.data.NotYetAvailable", LookupError),
        ("blissng.data.EndOfData", IndexError),
        ("blissng.workflows.JobTimeout", TimeoutError),
        ("blissng.workflows.WorkflowsNotInstalled", ImportError),
        ("blissng.acquisition.ChainConfigurationError", ValueError),
        ("blissng.scans.ScanArgumentError", ValueError),
        ("blissng.locks.DeviceLocked", RuntimeError),
        ("blissng.shell.UnknownConsole", KeyError),
    ],
)
def test_errors_keep_their_builtin_kind(name: str, builtin: type[BaseException]):
    module, _, attribute = name.rpartition(".")
    cls = getattr(importlib.import_module(module), attribute)
    assert issubclass(cls, BlissngError) and issubclass(cls, builtin)


def test_a_stop_is_not_an_error():
    """``except Exception`` (or ``except BlissngError``) in user code never swallows a stop."""
    assert not issubclass(Aborted, Exception)
    with pytest.raises(Aborted):
        try:
            raise Aborted("ascan cancelled")
        except Exception:  # what user code writes
            pytest.fail("a stop was caught as an error")
    assert blissng.Aborted is Aborted and blissng.BlissngError is BlissngError


def test_the_leaves_of_a_task_groups_failure_in_order():
    a, b, c = ValueError("a"), KeyError("b"), Aborted("c")
    group = BaseExceptionGroup("outer", [a, BaseExceptionGroup("inner", [b, c])])
    assert leaf_exceptions(group) == [a, b, c]
    assert leaf_exceptions(a) == [a]
    assert sole_exception(BaseExceptionGroup("g", [BaseExceptionGroup("h", [a])])) is a
    assert sole_exception(group) is group and sole_exception(a) is a


GROUP_CATCHERS = {"BaseException", "Exception", "BaseExceptionGroup", "ExceptionGroup"}


def _plain_catches_around_task_groups(source: str) -> list[int]:
    """Lines of ``try:`` blocks that open a task group and catch a named exception with a
    plain ``except``: a task group raises even its body's single error as an exception group,
    so that handler never runs (a closed websocket logged as a traceback, CI of stop 18).
    ``except*``, or catching the group itself, is what works."""
    found: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if type(node) is not ast.Try:  # ast.TryStar is the right form
            continue
        opens_a_group = any(
            isinstance(inner, ast.AsyncWith)
            and any("task_group" in ast.unparse(item.context_expr) for item in inner.items)
            for statement in node.body
            for inner in ast.walk(statement)
        )
        caught = {
            name
            for handler in node.handlers
            if handler.type is not None
            for name in re.findall(r"[\w.]+", ast.unparse(handler.type))
        }
        if opens_a_group and caught - GROUP_CATCHERS:
            found.append(node.lineno)
    return found


def test_no_plain_except_around_a_task_group():
    found = [
        f"{path.relative_to(SOURCE.parent)}:{line}"
        for _, (path, _) in sorted(_modules().items())
        for line in _plain_catches_around_task_groups(path.read_text())
    ]
    assert not found, f"use except* (a task group raises exception groups): {found}"


def test_the_task_group_catch_check_finds_a_plain_except():
    plain = (
        "async def f():\n"
        "    try:\n"
        "        async with anyio.create_task_group() as tg:\n"
        "            await send()\n"
        "    except WebSocketDisconnect:\n"
        "        pass\n"
    )
    assert _plain_catches_around_task_groups(plain) == [2]
    starred = plain.replace("except WebSocketDisconnect", "except* WebSocketDisconnect")
    assert _plain_catches_around_task_groups(starred) == []
    group = plain.replace("except WebSocketDisconnect", "except BaseExceptionGroup")
    assert _plain_catches_around_task_groups(group) == []


THREAD_HELPER = "blissng.threads"
WHY_NOT_THE_HELPER = "run_in_thread"  # the reason comment names the helper it does not use


def _direct_thread_calls(source: str) -> list[int]:
    """Lines of ``to_thread.run_sync(...)``, ``run_sync`` imported from ``anyio.to_thread``,
    ``asyncio.to_thread(...)`` and ``run_in_executor(...)`` with no reason comment."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "anyio.to_thread":
            found.append(node.lineno)
        elif isinstance(node, ast.Attribute) and (
            (node.attr == "run_sync" and ast.unparse(node.value).endswith("to_thread"))
            or (node.attr == "to_thread" and ast.unparse(node.value) == "asyncio")
            or node.attr == "run_in_executor"
        ):
            found.append(node.lineno)

    def explained(lineno: int) -> bool:
        here = lines[lineno - 1]
        if "#" in here and WHY_NOT_THE_HELPER in here.split("#", 1)[1]:
            return True
        above = lineno - 2
        while above >= 0 and lines[above].strip().startswith("#"):
            if WHY_NOT_THE_HELPER in lines[above]:
                return True
            above -= 1
        return False

    return sorted({n for n in found if not explained(n)})


def test_blocking_calls_go_through_the_one_helper():
    unexplained = [
        f"{path.relative_to(SOURCE.parent)}:{line}"
        for name, (path, _) in sorted(_modules().items())
        if name != THREAD_HELPER
        for line in _direct_thread_calls(path.read_text())
    ]
    assert not unexplained, (
        "direct worker-thread calls: use blissng.threads.run_in_thread, or say in a comment "
        f"on the line or just above why not ({WHY_NOT_THE_HELPER} named): {unexplained}"
    )


def test_the_helper_check_finds_a_direct_call_and_accepts_a_reason():
    direct = "import anyio.to_thread\nasync def f():\n    await anyio.to_thread.run_sync(g)\n"
    assert _direct_thread_calls(direct) == [3]
    imported = "from anyio.to_thread import run_sync\n"
    assert _direct_thread_calls(imported) == [1]
    executor = "async def f(loop):\n    await loop.run_in_executor(None, g)\n"
    assert _direct_thread_calls(executor) == [2]
    reasoned = (
        "async def f():\n"
        "    # Not run_in_thread: the test's own thread.\n"
        "    await anyio.to_thread.run_sync(g)\n"
    )
    assert _direct_thread_calls(reasoned) == []


# The standard library's documented functions whose names begin with an underscore.
DOCUMENTED_UNDERSCORED = {"sys._current_frames", "sys._getframe", "os._exit"}
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
WHY_INTERNALS = "internals"


def _names_defined(tree: ast.AST) -> set[str]:
    """Functions, classes, attributes and variables a module defines (assigns or declares):
    an attribute is its own when stored on ``self`` or ``cls``; storing one on another object
    (``axis._connected = False``) is reaching it, not defining it."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _comments_of(lines: list[str], lineno: int) -> str:
    """The line's comment and the comment block just above it."""
    text = lines[lineno - 1].split("#", 1)[1] if "#" in lines[lineno - 1] else ""
    above = lineno - 2
    while above >= 0 and lines[above].strip().startswith("#"):
        text += " " + lines[above]
        above -= 1
    return text


def _names_a_library(comment: str) -> bool:
    """Whether ``comment`` says whose internals: ``<library> internals``, the library an
    importable module that is not blissng (whose modules offer named methods instead)."""
    return any(
        library != "blissng" and importlib.util.find_spec(library) is not None
        for library in re.findall(r"([A-Za-z_]\w*)'?s? " + WHY_INTERNALS, comment)
    )


def _private_attribute_reaches(source: str) -> list[tuple[int, str]]:
    """``obj._name`` reads and writes of a ``_name`` this module does not define, without a
    comment naming the library whose internals they are (blissng's own modules offer named
    methods instead)."""
    tree = ast.parse(source)
    own = _names_defined(tree)
    lines = source.splitlines()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
            continue
        text = ast.unparse(node)
        if node.attr in own or node.attr in NAMEDTUPLE_API or text in DOCUMENTED_UNDERSCORED:
            continue
        if not _names_a_library(_comments_of(lines, node.lineno)):
            found.append((node.lineno, text))
    return sorted(found)


def test_no_module_reaches_another_modules_private_attributes():
    found = [
        f"{name}:{line}: {text}"
        for name, (path, _) in sorted(_modules().items())
        for line, text in _private_attribute_reaches(path.read_text())
    ]
    assert not found, (
        "private attributes reached from another module (the owner offers a named method; a "
        f"library's internals carry a comment '<library> {WHY_INTERNALS}: why'): {found}"
    )


def test_the_private_attribute_check_finds_them():
    source = (
        "import anyio\n"
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = other._mine\n"  # its own class's attribute: fine
        "        return other._theirs  # internals\n"  # whose? not said
        "def g(x):\n"
        "    x._internal.clear()\n"  # no reason
        "    x._begin()  # blissng internals\n"  # our own: a named method instead
        "    x._connected = False\n"  # a write reaches it too (it defines nothing)
        "    # anyio internals: no public way to reach the task's scope\n"
        "    return x._scope\n"
    )
    assert _private_attribute_reaches(source) == [
        (5, "other._theirs"),
        (7, "x._internal"),
        (8, "x._begin"),
        (9, "x._connected"),
    ]


LONG_MODULE = 500
WHY_LONG = "One module of"


def _too_long_without_a_reason(source: str) -> int | None:
    """The module's length if it is over LONG_MODULE lines and its docstring says not why."""
    lines = len(source.splitlines())
    if lines > LONG_MODULE and WHY_LONG not in (ast.get_docstring(ast.parse(source)) or ""):
        return lines
    return None


def test_no_module_over_500_lines_without_a_reason():
    unexplained = [
        f"{name} ({lines} lines)"
        for name, (path, _) in sorted(_modules().items())
        if (lines := _too_long_without_a_reason(path.read_text())) is not None
    ]
    assert not unexplained, (
        f"modules over {LONG_MODULE} lines: split them along a seam, or say in the docstring "
        f"why each stays whole ('{WHY_LONG} ... because ...'): {unexplained}"
    )


def test_the_length_check_finds_a_long_module_and_accepts_a_reason():
    body = "x = 1\n" * LONG_MODULE
    assert _too_long_without_a_reason('"""A module."""\n' + body) == LONG_MODULE + 1
    reason = f'"""A module.\n\n{WHY_LONG} 501 lines because it is one table.\n"""\n'
    assert _too_long_without_a_reason(reason + body) is None
    assert _too_long_without_a_reason('"""A module."""\n' + body[6:]) is None


ARCHITECTURE = SOURCE.parent.parent / "docs" / "architecture.md"


def _layers() -> dict[str, int]:
    """Each package's rank in the table of docs/architecture.md ("Layers, bottom-up")."""
    text = ARCHITECTURE.read_text()
    table = text.split("## Layers, bottom-up", 1)[1].split("\n## ", 1)[0]
    ranks: dict[str, int] = {}
    for line in table.splitlines():
        found = re.match(r"\| [^|]+ \| ((?:`blissng\.\w+`(?:, )?)+) \|", line)
        if found:
            rank = len(set(ranks.values()))
            ranks.update((name, rank) for name in re.findall(r"blissng\.\w+", found.group(1)))
    return ranks


ANY_LAYER = {"blissng.testing", "blissng.demo"}  # the page: they may import anything


def _upward_imports(graph: dict[str, set[str]], ranks: dict[str, int]) -> list[str]:
    """The imports of ``graph`` from a package to one of its own layer or above."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        if _package(module) in ranks and _package(module) not in ANY_LAYER
        for target in sorted(targets)
        if _package(target) in ranks
        and _package(target) != _package(module)
        and ranks[_package(target)] >= ranks[_package(module)]
    ]


def test_each_package_imports_only_the_layers_below_it():
    ranks = _layers()
    assert len(ranks) > 20, "the layer table of docs/architecture.md was not found"
    packages = {_package(m) for m in _modules()} - {"blissng", "blissng.__main__"}
    assert packages - ranks.keys() == set(), "packages missing from docs/architecture.md"
    upward = _upward_imports(_import_graph(), ranks)
    assert not upward, "imports of a layer not below: " + ", ".join(upward)


def test_the_layer_check_finds_an_import_not_below():
    ranks = {"blissng.comm": 0, "blissng.devices": 1, "blissng.sim": 1, "blissng.testing": 2}
    graph = {
        "blissng.devices._axis": {"blissng.comm", "blissng.devices._errors"},  # below, own
        "blissng.devices._group": {"blissng.sim"},  # the same layer
        "blissng.comm._tcp": {"blissng.devices._axis"},  # above
        "blissng.testing._sims": {"blissng.sim"},  # above, but testing may import anything
    }
    assert _upward_imports(graph, ranks) == [
        "blissng.comm._tcp -> blissng.devices._axis",
        "blissng.devices._group -> blissng.sim",
    ]


@pytest.mark.parametrize(
    ("outer", "inner"),
    [("blissng.web", "blissng.devices"), ("blissng.shell", "blissng.scans")],
)
def test_the_outer_layers_reach_the_inner_ones_through_the_session(outer: str, inner: str):
    """The web's object states and positions come from ``blissng.session`` (it knows what
    moves), a shell session is what ``blissng.session`` offers (no scan context)."""
    crossing = [
        f"{module} -> {target}"
        for module, targets in sorted(_import_graph().items())
        if _package(module) == outer
        for target in sorted(targets)
        if _package(target) == inner
    ]
    assert not crossing, f"{outer} reaches past the session layer: {crossing}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(module: str, path: Path, is_package: bool) -> list[str]:
    """Imports in ``module`` of another package's private module or private name."""
    found: list[str] = []
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        else:
            target = _from_target(node, module, is_package)
            targets = [(target, alias.name) for alias in node.names]
        for target, name in targets:
            if not target.startswith("blissng.") or _package(target) == _package(module):
                continue
            if any(_private(part) for part in target.split(".")) or (name and _private(name)):
                found.append(f"{module}: {target}" + (f" import {name}" if name else ""))
    return found


def test_no_module_imports_another_packages_private_names():
    found = [
        line
        for module, (path, is_package) in sorted(_modules().items())
        for line in _private_imports(module, path, is_package)
    ]
    assert not found, "private names of another package imported: " + ", ".join(found)


def test_the_private_import_check_finds_them(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "from blissng.data._entries import parse_entry\n"
        "from ..redisdb import _helper\n"
        "import blissng.writer._scan\n"
        "from blissng.redisdb import text as _text\n"  # a public name, privately aliased
        "from ._own import thing\n"  # the package's own private module
    )
    assert _private_imports("blissng.scans.m", source, False) == [
        "blissng.scans.m: blissng.data._entries import parse_entry",
        "blissng.scans.m: blissng.redisdb import _helper",
        "blissng.scans.m: blissng.writer._scan",
    ]


def _deep_imports(module: str, path: Path, is_package: bool) -> list[str]:
    """Names ``module`` imports from another package's module although its face offers them."""
    found: list[str] = []
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _from_target(node, module, is_package)
        face = _package(target)
        if not target.startswith("blissng.") or target == face or face == _package(module):
            continue
        offered = set(getattr(importlib.import_module(face), "__all__", ()))
        found += [
            f"{module}: from {target} import {alias.name} (offered by {face})"
            for alias in node.names
            if alias.name in offered
        ]
    return found


def test_no_deep_import_bypasses_a_face():
    found = [
        line
        for module, (path, is_package) in sorted(_modules().items())
        for line in _deep_imports(module, path, is_package)
    ]
    assert not found, "imports past a package's face: " + ", ".join(found)


def test_the_deep_import_check_finds_them(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "from blissng.devices._axis import Axis\n"  # offered by blissng.devices
        "from blissng.devices import Group\n"  # through the face
        "from blissng.scans._scan import Scan\n"  # its own package's module
        "from blissng.devices._axis import MotionInProgress\n"  # not offered by the face
    )
    assert _deep_imports("blissng.scans.m", source, False) == [
        "blissng.scans.m: from blissng.devices._axis import Axis (offered by blissng.devices)"
    ]


def _private_names_of_siblings(module: str, path: Path, is_package: bool) -> list[str]:
    """``_name``s (not private modules) ``module`` imports from another module of its package."""
    modules = _modules()
    found: list[str] = []
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        target = _from_target(node, module, is_package)
        found += [
            f"{module}: from {target} import {alias.name}"
            for alias in node.names
            if _private(alias.name) and f"{target}.{alias.name}" not in modules
        ]
    return found


def test_no_module_imports_a_private_name_of_another_module():
    found = [
        line
        for module, (path, is_package) in sorted(_modules().items())
        for line in _private_names_of_siblings(module, path, is_package)
    ]
    assert not found, "private names of another module imported: " + ", ".join(found)


def test_the_sibling_private_name_check_finds_them(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "from ._axis import _begin\n"  # a private name of another module
        "from . import _axis\n"  # a private module of its package: fine
        "from ._axis import Axis\n"
        "from blissng.devices._axis import _absolute\n"  # absolute: the other checks' matter
    )
    assert _private_names_of_siblings("blissng.devices.m", source, False) == [
        "blissng.devices.m: from blissng.devices._axis import _begin"
    ]


def _packages_with_private_modules() -> list[str]:
    """The packages docs/architecture.md says keep their modules private ("so far ...")."""
    text = " ".join(ARCHITECTURE.read_text().split())
    listed = re.search(r"`__all__` \(so far (.*?); the others", text)
    assert listed, "docs/architecture.md no longer lists the packages with private modules"
    return [f"blissng.{name}" for name in re.findall(r"`(\w+)`", listed.group(1))]


def _public_by_name() -> set[str]:
    """The modules docs/architecture.md says stay public, each with its reason ("`blissng.x.y`
    stays public because ..."): their dotted names are identifiers stored outside the code."""
    text = " ".join(ARCHITECTURE.read_text().split())
    return set(re.findall(r"`(blissng\.\w+\.\w+)` stays public because \w", text))


def test_the_listed_packages_keep_their_modules_private_behind_a_face():
    packages = _packages_with_private_modules()
    assert len(packages) >= 10
    kept = _public_by_name()
    assert kept <= _modules().keys(), f"no such modules: {kept - _modules().keys()}"
    public = [
        module
        for module in _modules()
        if _package(module) in packages
        and module != _package(module)
        and not module.rsplit(".", 1)[1].startswith("_")
        and module not in kept
    ]
    assert not public, f"public implementation modules in a package with a face: {public}"
    without_all = [p for p in packages if not hasattr(importlib.import_module(p), "__all__")]
    assert not without_all, f"faces without __all__: {without_all}"
