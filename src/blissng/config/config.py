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
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .classes import resolve_class
from .errors import ConfigError, Location, field_path
from .tree import ObjectInfo, Section, Tree, is_inline_object, read_tree, to_plain

if TYPE_CHECKING:
    from blissng.redisdb.settings import SettingsStore

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
        path: tuple[str | int, ...] = (field,) if isinstance(field, str) else field
        return ConfigError(
            problem,
            location=self.info.location_of(path) if path else self.info.location,
            object=self.info.name,
            field=field_path(path) or None,
        )


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
        return await anyio.to_thread.run_sync(functools.partial(cls, directory, settings))

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
        return await anyio.to_thread.run_sync(self.reload)

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
            raise ConfigError(
                exc.problem, location=info.location_of(("class",)), object=info.name, field="class"
            ) from exc.__cause__
        model = getattr(cls, "Parameters", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(
                f"class {info.class_name!r} has no 'Parameters' pydantic model "
                "(derive from blissng.config.Configurable or declare one)",
                location=info.location_of(("class",)),
                object=info.name,
                field="class",
            )
        if not callable(getattr(cls, "from_config", None)):
            raise ConfigError(
                f"class {info.class_name!r} has no from_config(name, params, context) "
                "(derive from blissng.config.Configurable or write one)",
                location=info.location_of(("class",)),
                object=info.name,
                field="class",
            )
        raw = {
            key: self._resolve(info, value, (key,))
            for key, value in info.node.items()
            if key not in ("name", "class")
        }
        params = self._validate(info, model, raw)
        try:
            return cls.from_config(info.name, params, ConfigContext(self, info))
        except ConfigError as exc:
            if exc.location is None:
                exc.location = info.location
                exc.object = exc.object or info.name
                exc.args = (exc.message,)
            raise
        except Exception as exc:
            raise ConfigError(
                f"{cls.__name__}.from_config failed: {type(exc).__name__}: {exc}",
                location=info.location,
                object=info.name,
            ) from exc

    def _build_child(self, info: ObjectInfo) -> Any:
        assert info.parent is not None
        try:
            parent = self._get(info.parent, referrer=None)
        except ConfigError as exc:
            raise ConfigError(
                f"its parent {info.parent!r} cannot be built: {exc}",
                location=info.location,
                object=info.name,
            ) from exc
        child = getattr(parent, "child", None)
        if not callable(child):
            raise ConfigError(
                f"is defined inside {info.parent!r}, whose class has no child(name) method",
                location=info.location,
                object=info.name,
            )
        try:
            return child(info.name)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"{info.parent}.child({info.name!r}) failed: {type(exc).__name__}: {exc}",
                location=info.location,
                object=info.name,
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
            # plain mappings and children (their parameters go to the parent) alike
            return {
                to_plain(key): self._resolve(info, value, (*path, to_plain(key)))
                for key, value in node.items()
            }
        if isinstance(node, CommentedSeq):
            return [self._resolve(info, item, (*path, i)) for i, item in enumerate(node)]
        return to_plain(node)

    def _reference(self, info: ObjectInfo, name: str, path: tuple[str | int, ...]) -> Any:
        try:
            return self._get(name, referrer=(info, path))
        except ConfigError as exc:
            if exc.object == info.name:  # already about this reference (dangling, cycle)
                raise
            raise ConfigError(
                f"'${name}' cannot be built: {exc}",
                location=info.location_of(path),
                object=info.name,
                field=field_path(path) or None,
            ) from exc

    def _validate(self, info: ObjectInfo, model: type[BaseModel], raw: dict[str, Any]) -> Any:
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
                    raise ConfigError(
                        f"unknown parameter{hint} (parameters of {info.class_name}: {expected})",
                        location=info.location_of((key,)),
                        object=info.name,
                        field=str(key),
                    )
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            # group by the path in the YAML: a union's members give one error each, tagged
            # with the member's type ("x.int", "x.literal['auto']"), for one value
            grouped: dict[tuple[str | int, ...], list[str]] = {}
            for error in exc.errors(include_url=False):
                path = _yaml_path(info.node, tuple(error["loc"]), error["type"])
                grouped.setdefault(path, []).append(_pydantic_problem(error))
            (path, reasons), *rest = grouped.items()
            problem = " or ".join(dict.fromkeys(reasons))
            for other_path, other_reasons in rest:
                line = info.location_of(other_path).line
                problem += f"; also field {field_path(other_path)!r} (line {line}): " + " or ".join(
                    dict.fromkeys(other_reasons)
                )
            raise ConfigError(
                problem,
                location=info.location_of(path),
                object=info.name,
                field=field_path(path) or None,
            ) from None


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
