"""The configuration: a directory of YAML files -> validated parameters -> objects.

``Config(directory)`` reads every file at once (so syntax errors, duplicate names and objects
without a class are known straight away), and builds objects lazily: ``config.get("m1")``
resolves ``$references``, validates the parameters with the class's pydantic model and calls
``Class.from_config(name, params, context)``, once. A failing object is remembered with its
error and never prevents the others from being built.

Reading the files is blocking file-system work: from async code, use ``await Config.open(dir)``
and ``await config.areload()``, which read in a worker thread. ``from_config`` must be cheap and
do no I/O (objects connect to their hardware later, in ``async def connect()``), so ``get`` may
be called on the event loop.

One module of ~590 lines because building an object (resolving references, validating,
remembering failures) and reporting a YAML problem at its file and line are one path; the
tree, the registry and connecting live in their own modules.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from blissng.errors import BlissngError
from blissng.threads import run_in_thread

from ._classes import resolve_class
from ._errors import ConfigError, Location, field_path
from ._tree import ObjectInfo, Section, Tree, is_inline_object, read_tree, to_plain

if TYPE_CHECKING:
    from blissng.redisdb import SettingsStore

REFERENCE = re.compile(r"^\$([A-Za-z_]\w*)$")


class ConfigContext:
    """What ``from_config`` gets besides its parameters: other objects, settings, errors."""

    def __init__(self, config: Config, info: ObjectInfo) -> None:
        self.config = config
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def location(self) -> Location:
        return self.info.location

    @property
    def settings(self) -> SettingsStore | None:
        return self.config.settings

    @property
    def children(self) -> list[str]:
        """Names of the children defined inside this object (for ``child(name)``)."""
        return list(self.info.children)

    def get(self, name: str) -> Any:
        """Another object, built if needed (a cycle back to this one is an error)."""
        return self.config._get(name, referrer=(self.info, ()))

    def error(self, problem: str, field: str | tuple[str | int, ...] = ()) -> ConfigError:
        """An error located at this object (at ``field``'s line if given), to raise."""
        return self.info.error(problem, (field,) if isinstance(field, str) else field)


class Config:
    """The objects and sections of one configuration directory. Thread-safe."""

    def __init__(self, directory: str | Path, settings: SettingsStore | None = None) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.settings = settings
        self._lock = threading.RLock()
        self._tree: Tree = read_tree(self.directory)
        self._built: dict[str, Any] = {}
        self._failed: dict[str, ConfigError] = {}
        self._building: list[str] = []

    @classmethod
    async def open(cls, directory: str | Path, settings: SettingsStore | None = None) -> Config:
        """Read the files in a worker thread (for use on the event loop)."""
        return await run_in_thread(functools.partial(cls, directory, settings))

    def __repr__(self) -> str:
        return f"<Config {self.directory} ({len(self._tree.objects)} objects)>"

    # ------------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        """Every object's name (children included), in the order of the files."""
        return list(self._tree.objects)

    def __contains__(self, name: object) -> bool:
        return name in self._tree.objects

    def info(self, name: str) -> ObjectInfo:
        """Where and how ``name`` is defined (file, line, class, parent, raw parameters)."""
        try:
            return self._tree.objects[name]
        except KeyError:
            raise self._unknown(name) from None

    @property
    def files(self) -> list[Path]:
        return list(self._tree.files)

    @property
    def errors(self) -> list[ConfigError]:
        """Problems found so far: reading errors, then errors of objects that failed to build.

        Call :meth:`build_all` first to know every object's problems.
        """
        with self._lock:
            return [*self._tree.errors, *self._failed.values()]

    def section_keys(self) -> list[str]:
        return list(self._tree.sections)

    def sections(self, key: str) -> list[Section]:
        """Every top-level ``key:`` in the files, in file order (with file and line)."""
        return list(self._tree.sections.get(key, []))

    def section(self, key: str) -> Section | None:
        """The one top-level ``key:`` section (``section.value``, ``section.location``),
        None if no file has it. Defined in two files: a :class:`ConfigError` naming both."""
        found = self._tree.sections.get(key, [])
        if not found:
            return None
        if len(found) > 1:
            where = ", ".join(str(s.location) for s in found)
            raise ConfigError(
                f"section {key!r} is defined {len(found)} times ({where}); keep one",
                location=found[1].location,
            )
        return found[0]

    def reload(self) -> dict[str, Any]:
        """Read the files again and forget every built object and error.

        Returns the objects built before, so the caller can close them.
        """
        tree = read_tree(self.directory)
        with self._lock:
            old = self._built
            self._tree = tree
            self._built = {}
            self._failed = {}
            return old

    async def areload(self) -> dict[str, Any]:
        """:meth:`reload` with the files read in a worker thread."""
        return await run_in_thread(self.reload)

    # ------------------------------------------------------------------------ building

    def get(self, name: str) -> Any:
        """The object ``name``, built on first use. Raises :class:`ConfigError`."""
        return self._get(name, referrer=None)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def built(self) -> dict[str, Any]:
        """The objects built so far."""
        with self._lock:
            return dict(self._built)

    def build_all(self) -> dict[str, Any]:
        """Build every object that can be; failures land in :attr:`errors`."""
        for name in self.names():
            try:
                self.get(name)
            except ConfigError:
                pass
        return self.built()

    def objects(self) -> Iterator[tuple[str, Any]]:
        """``(name, object)`` for every object that builds, in file order."""
        for name in self.names():
            try:
                yield name, self.get(name)
            except ConfigError:
                continue

    def _unknown(self, name: str) -> ConfigError:
        if name in self._tree.not_objects:
            return ConfigError(
                "is not an object: it has no class",
                location=self._tree.not_objects[name],
                object=name,
            )
        if name in self._tree.unreadable:
            lost = self._tree.unreadable[name]
            return ConfigError(
                f"is not loaded: its lines are not valid YAML (see {lost.location})",
                object=name,
            )
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        return ConfigError(f"no object named {name!r} in {self.directory}{hint}")

    def _get(self, name: str, referrer: tuple[ObjectInfo, tuple[str | int, ...]] | None) -> Any:
        with self._lock:
            if name in self._built:
                return self._built[name]
            if name in self._failed:
                raise self._failed[name]
            if name in self._tree.duplicates:
                raise self._tree.duplicates[name]
            info = self._tree.objects.get(name)
            if info is None:
                error = self._unknown(name)
                if referrer is not None:
                    source, path = referrer
                    if name in self._tree.not_objects:
                        why = f": {name!r} ({error.location}) has no class"
                    elif name in self._tree.unreadable:
                        why = f": {name!r} {error.problem}"
                    elif "did you mean" in error.problem:
                        why = f": {error.problem}"
                    else:
                        why = ""
                    error = ConfigError(
                        f"reference '${name}' names no object{why}",
                        location=source.location_of(path),
                        object=source.name,
                        field=field_path(path) or None,
                    )
                raise error
            if name in self._building:
                cycle = " -> ".join([*self._building[self._building.index(name) :], name])
                source, path = referrer if referrer else (info, ())
                raise ConfigError(
                    f"reference cycle: {cycle}",
                    location=source.location_of(path),
                    object=source.name,
                    field=field_path(path) or None,
                )
            self._building.append(name)
            try:
                obj = self._build(info)
            except ConfigError as exc:
                self._failed[name] = exc
                raise
            finally:
                self._building.pop()
            self._built[name] = obj
            return obj

    def _build(self, info: ObjectInfo) -> Any:
        if info.class_name is None:
            return self._build_child(info)
        try:
            cls = resolve_class(info.class_name)
        except ConfigError as exc:
            raise info.error(exc.problem, ("class",)) from exc.__cause__
        model = getattr(cls, "Parameters", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise info.error(
                f"class {info.class_name!r} has no 'Parameters' pydantic model "
                "(derive from blissng.config.Configurable or declare one)",
                ("class",),
            )
        if not callable(getattr(cls, "from_config", None)):
            raise info.error(
                f"class {info.class_name!r} has no from_config(name, params, context) "
                "(derive from blissng.config.Configurable or write one)",
                ("class",),
            )
        raw = {
            key: self._resolve(info, value, (key,))
            for key, value in info.node.items()
            if key not in ("name", "class")
        }
        params = self._validate_without_bad_children(info, model, raw)
        try:
            return cls.from_config(info.name, params, ConfigContext(self, info))
        except ConfigError as exc:
            if exc.location is None:
                exc.location = info.location
                exc.object = exc.object or info.name
                exc.args = (exc.message,)
            raise
        except Exception as exc:
            raise info.error(
                f"{cls.__name__}.from_config failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _build_child(self, info: ObjectInfo) -> Any:
        assert info.parent is not None
        try:
            parent = self._get(info.parent, referrer=None)
        except ConfigError as exc:
            raise info.error(f"its parent {info.parent!r} cannot be built: {exc}") from exc
        if info.name in self._failed:  # set aside while its parent was built
            raise self._failed[info.name]
        child = getattr(parent, "child", None)
        if not callable(child):
            raise info.error(
                f"is defined inside {info.parent!r}, whose class has no child(name) method"
            )
        try:
            return child(info.name)
        except ConfigError:
            raise
        except Exception as exc:
            raise info.error(
                f"{info.parent}.child({info.name!r}) failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _resolve(self, info: ObjectInfo, node: Any, path: tuple[str | int, ...]) -> Any:
        """Plain Python values with ``$name`` and inline objects replaced by the objects."""
        if isinstance(node, str):
            match = REFERENCE.match(node)
            if match:
                return self._reference(info, match.group(1), path)
            if node.startswith("$$"):
                return node[1:]
            return str(node)
        if isinstance(node, CommentedMap):
            if is_inline_object(node):  # an object defined in place: the parent gets it built
                return self._reference(info, node["name"], path)
            child = self._child_at(info, node)
            try:  # plain mappings and children (their parameters go to the parent) alike
                resolved = {
                    to_plain(key): self._resolve(info, value, (*path, to_plain(key)))
                    for key, value in node.items()
                }
            except ConfigError as exc:
                if child is None:
                    raise
                prefix = field_path(path)
                inside = (exc.field or "")[len(prefix) :].lstrip(".")
                if not (exc.field or "").startswith(prefix):
                    inside = ""
                self._set_aside(info, child, exc.problem, path, exc.location, inside)
                return _SET_ASIDE
            return resolved
        if isinstance(node, CommentedSeq):
            return [self._resolve(info, item, (*path, i)) for i, item in enumerate(node)]
        return to_plain(node)

    # ------------------------------------------------------------------------ children

    def _child_at(self, info: ObjectInfo, node: Any) -> ObjectInfo | None:
        """The child of ``info`` whose mapping ``node`` is (an axis under its controller)."""
        name = node.get("name") if isinstance(node, CommentedMap) else None
        if not isinstance(name, str) or name not in info.children:
            return None
        child = self._tree.objects.get(name)
        return child if child is not None and child.node is node else None

    def _set_aside(
        self,
        info: ObjectInfo,
        child: ObjectInfo,
        problem: str,
        path: tuple[str | int, ...],
        location: Location | None = None,
        field: tuple[str | int, ...] | str = (),
    ) -> None:
        """Fail ``child`` alone, with its own error; its parent is built without it (a bad
        axis costs that axis, not the 19 others of its controller)."""
        if isinstance(field, str):
            shown = field
        else:
            shown = field_path(field)
            location = location or child.location_of(field)
        self._failed[child.name] = ConfigError(
            f"{problem} ({info.name!r} is loaded without it)",
            location=location or child.location,
            object=child.name,
            field=shown or None,
        )

    def _validate_without_bad_children(
        self, info: ObjectInfo, model: type[BaseModel], raw: dict[str, Any]
    ) -> Any:
        """:meth:`_validate`, the children whose own fields are wrong set aside (each failing
        with its error) and the parent validated again without them. An error outside every
        child is the parent's: it fails, as before."""
        while True:  # ``raw`` keeps the places of the YAML: set-aside children are marked
            try:
                return self._validate(info, model, raw)
            except _InvalidFields as exc:
                bad = self._bad_children(info, exc.paths)
                if bad is None:
                    raise exc.error from None
                for path, (child, insides) in bad.items():
                    reasons = {inside: exc.paths[(*path, *inside)] for inside in insides}
                    self._set_aside(info, child, _problems(reasons, child), path, field=insides[0])
                    _mark_set_aside(raw, path)

    def _bad_children(
        self, info: ObjectInfo, paths: dict[tuple[str | int, ...], list[str]]
    ) -> dict[tuple[str | int, ...], tuple[ObjectInfo, list[tuple[str | int, ...]]]] | None:
        """The children the errors lie in: the child's path -> the child and the paths of the
        errors inside it; None if an error lies outside every child."""
        found: dict[tuple[str | int, ...], tuple[ObjectInfo, list[tuple[str | int, ...]]]] = {}
        for path in paths:
            node: Any = info.node
            for depth, part in enumerate(path):
                if isinstance(node, CommentedMap) and part in node:
                    node = node[part]
                elif isinstance(node, CommentedSeq) and isinstance(part, int):
                    node = node[part]
                else:
                    return None
                child = self._child_at(info, node)
                if child is not None and depth + 1 < len(path):
                    found.setdefault(path[: depth + 1], (child, []))[1].append(path[depth + 1 :])
                    break
            else:
                return None
        return found

    def _reference(self, info: ObjectInfo, name: str, path: tuple[str | int, ...]) -> Any:
        try:
            return self._get(name, referrer=(info, path))
        except ConfigError as exc:
            if exc.object == info.name:  # already about this reference (dangling, cycle)
                raise
            raise info.error(
                f"'${name}' cannot be built: {exc}",
                path,
            ) from exc

    def _validate(self, info: ObjectInfo, model: type[BaseModel], marked: dict[str, Any]) -> Any:
        raw = _without_set_aside(marked)
        if model.model_config.get("extra") != "allow":
            known = set(model.model_fields)
            for field in model.model_fields.values():
                if isinstance(field.alias, str):
                    known.add(field.alias)
                if isinstance(field.validation_alias, str):
                    known.add(field.validation_alias)
            for key in raw:
                if key not in known:
                    close = difflib.get_close_matches(str(key), sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    expected = ", ".join(sorted(known)) or "none"
                    raise info.error(
                        f"unknown parameter{hint} (parameters of {info.class_name}: {expected})",
                        (key,),
                    )
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            # group by the path in the YAML: a union's members give one error each, tagged
            # with the member's type ("x.int", "x.literal['auto']"), for one value
            grouped: dict[tuple[str | int, ...], list[str]] = {}
            for error in exc.errors(include_url=False):
                loc = _marked_path(marked, tuple(error["loc"]))
                path = _yaml_path(info.node, loc, error["type"])
                grouped.setdefault(path, []).append(_pydantic_problem(error))
            path = next(iter(grouped))
            invalid = info.error(
                _problems(grouped, info),
                path,
            )
            raise _InvalidFields(invalid, grouped) from None


def _problems(grouped: dict[tuple[str | int, ...], list[str]], info: ObjectInfo) -> str:
    """One line for the validation errors of an object, by field: the first field's reasons,
    then ``; also field 'x' (line N): ...`` for each other."""
    (_path, reasons), *rest = grouped.items()
    problem = " or ".join(dict.fromkeys(reasons))
    for other_path, other_reasons in rest:
        line = info.location_of(other_path).line
        problem += f"; also field {field_path(other_path)!r} (line {line}): " + " or ".join(
            dict.fromkeys(other_reasons)
        )
    return problem


class _InvalidFields(BlissngError):
    """The parameters of an object failed validation: its error, and the reasons by path in
    the YAML (for setting bad children aside). Internal: never leaves this module."""

    def __init__(self, error: ConfigError, paths: dict[tuple[str | int, ...], list[str]]) -> None:
        super().__init__(str(error))
        self.error = error
        self.paths = paths


_SET_ASIDE = object()  # what a child set aside resolves to: left out of its parent's values


def _mark_set_aside(raw: Any, path: tuple[str | int, ...]) -> None:
    for part in path[:-1]:
        raw = raw[part]
    raw[path[-1]] = _SET_ASIDE


def _without_set_aside(value: Any) -> Any:
    """The values a model validates: set-aside children left out of their lists and maps."""
    if isinstance(value, dict):
        return {k: _without_set_aside(v) for k, v in value.items() if v is not _SET_ASIDE}
    if isinstance(value, list):
        return [_without_set_aside(v) for v in value if v is not _SET_ASIDE]
    return value


def _marked_path(marked: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A validation error's location in the values without set-aside children -> the same
    place in the YAML (list indexes count the set-aside items again)."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(marked, list) and isinstance(part, int):
            kept = [i for i, v in enumerate(marked) if v is not _SET_ASIDE]
            if not 0 <= part < len(kept):
                path.append(part)
                break
            part = kept[part]
        elif not (isinstance(marked, dict) and part in marked):
            path.append(part)
            break
        path.append(part)
        marked = marked[part]
    else:
        return tuple(path)
    return (*path, *loc[len(path) :])


def _yaml_path(node: Any, loc: tuple[str | int, ...], kind: str) -> tuple[str | int, ...]:
    """The part of a pydantic error location that exists in the YAML (plus the missing key
    itself for a missing parameter)."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(node, CommentedMap) and part in node:
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            if kind == "missing" and index == len(loc) - 1:
                path.append(part)
            break
        path.append(part)
    return tuple(path)


def _pydantic_problem(error: Any) -> str:
    if error["type"] == "missing":
        return "missing required parameter"
    text = str(error["msg"])
    value = error.get("input")
    if not isinstance(value, dict | list):
        text += f" (got {value!r})"
    return text
