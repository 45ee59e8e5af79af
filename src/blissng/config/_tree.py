"""Read a configuration directory into named objects and sections, keeping line numbers.

ruamel.yaml's round-trip loader keeps the line of every key and item, so that an error found
much later (a wrongly typed parameter, a dangling reference) can still point at its line.

What a file may hold (see docs/configuration.md):

- a mapping with a ``name``: one object (it needs a ``class``);
- a list of such mappings;
- a mapping without ``name``: *sections*, top-level keys that higher layers read
  (``sessions:``, ``workflows:``, ``controllers:``). Objects (mappings with ``name`` and
  ``class``) are found inside sections too, at any depth.

Inside an object, a mapping with a ``name`` and no ``class`` is a *child* of the nearest
enclosing named mapping (an axis under its controller); one with a ``class`` is an object of
its own, defined inline.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ._errors import ConfigError, Location, field_path

M = TypeVar("M", bound=BaseModel)

YAML_SUFFIXES = (".yml", ".yaml")


@dataclasses.dataclass
class ObjectInfo:
    """Where and how one named object is defined.

    ``class_name`` is None for a child; ``parent`` is the name of the enclosing named
    mapping (None at top level); ``node`` is the ruamel mapping (with line numbers).
    """

    name: str
    class_name: str | None
    parent: str | None
    location: Location
    node: CommentedMap
    children: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_child(self) -> bool:
        return self.class_name is None

    @property
    def raw(self) -> dict[str, Any]:
        """The mapping as plain Python values, references unresolved."""
        return to_plain(self.node)

    def location_of(self, path: tuple[str | int, ...]) -> Location:
        return locate(self.location.file, self.node, path)

    def error(self, problem: str, path: tuple[str | int, ...] = ()) -> ConfigError:
        """A :class:`ConfigError` of this object, at the line of ``path`` inside it (its
        field) or at the object itself."""
        return ConfigError(
            problem,
            location=self.location_of(path) if path else self.location,
            object=self.name,
            field=field_path(path) or None,
        )


@dataclasses.dataclass
class Section:
    """A top-level key of a file that is not an object: ``value`` is plain Python."""

    key: str
    value: Any
    location: Location
    node: Any

    def location_of(self, *path: str | int) -> Location:
        """The file and line of an item inside the section: ``location_of(0, "name")``."""
        return locate(self.location.file, self.node, path, self.location.line)

    def validated_items(self, model: type[M], shape: str) -> list[M]:
        """A list section (``sessions:``, ``background:``), each item validated by ``model``.

        ``shape`` says what the list holds, for the error when the section is not a list
        ("a list of sessions (- name: demo ...)"). A ConfigError names the file, the item's
        line, the item (``sessions[1]``) and the field.
        """
        if not isinstance(self.value, list):
            raise ConfigError(f"{self.key}: is {shape}", location=self.location)
        items: list[M] = []
        for index, item in enumerate(self.value):
            try:
                items.append(model.model_validate(item))
            except ValidationError as exc:
                first = exc.errors()[0]
                path = [str(p) for p in first["loc"]]
                try:
                    location = self.location_of(index, *path[:1])
                except Exception:
                    location = self.location
                raise ConfigError(
                    first["msg"],
                    location=location,
                    object=f"{self.key}[{index}]",
                    field=".".join(path) or None,
                ) from None
        return items


@dataclasses.dataclass
class Tree:
    """Everything read from one directory. Problems are collected, not raised."""

    directory: Path
    objects: dict[str, ObjectInfo] = dataclasses.field(default_factory=dict)
    duplicates: dict[str, ConfigError] = dataclasses.field(default_factory=dict)
    not_objects: dict[str, Location] = dataclasses.field(default_factory=dict)
    sections: dict[str, list[Section]] = dataclasses.field(default_factory=dict)
    errors: list[ConfigError] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)
    unreadable: dict[str, ConfigError] = dataclasses.field(default_factory=dict)
    """Names seen in lines not loaded (invalid YAML) -> the error that cost them."""


def yaml_files(directory: Path) -> list[Path]:
    """The YAML files below ``directory``, sorted, hidden files and directories skipped."""
    found = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in YAML_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def read_tree(directory: Path) -> Tree:
    """Parse every file; one bad file or object never stops the others."""
    if not directory.exists():
        raise ConfigError(f"configuration directory {directory} does not exist")
    if not directory.is_dir():
        raise ConfigError(f"configuration path {directory} is not a directory")
    tree = Tree(directory)
    definitions: dict[str, list[Location]] = {}
    for path in yaml_files(directory):
        tree.files.append(path)
        parts, errors, lost = _parse(path)
        tree.errors.extend(errors)
        for name, error in lost.items():
            tree.unreadable.setdefault(name, error)
        walker = _Walker(tree, path, definitions)
        for data in parts:
            walker.file(data)
    for name, places in definitions.items():
        if len(places) > 1:
            where = ", ".join(str(p) for p in places)
            error = ConfigError(
                f"duplicate name, defined {len(places)} times ({where}); rename all but one",
                location=places[1],
                object=name,
            )
            tree.duplicates[name] = error
            tree.errors.append(error)
            tree.objects.pop(name, None)
    return tree


def _parse(path: Path) -> tuple[list[Any], list[ConfigError], dict[str, ConfigError]]:
    """The file's parsed content (one item; or, for invalid YAML, the parts that parse on
    their own), its errors, and the names in the lines not loaded with the error of each.

    A syntax error costs only the top-level item it is in: the file is read again item by
    item (:func:`_top_level_parts`), each item that parses is kept, each that does not is
    reported with its lines. A beamline's file of twenty motors loses one, not twenty.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ConfigError(f"cannot read: {exc}", location=Location(path))], {}
    try:
        return [_load(text)], [], {}
    except YAMLError as exc:
        whole = _yaml_error(path, exc)
    lines = text.splitlines(keepends=True)
    parts: list[Any] = []
    errors: list[ConfigError] = []
    lost: dict[str, ConfigError] = {}
    ranges = _top_level_parts(lines)
    if len(ranges) < 2:  # nothing else in the file to spare
        return [], [whole], dict.fromkeys(_NAME.findall(text), whole)
    for start, end in ranges:
        try:  # blank lines in front keep the line numbers of the file
            data = _load("\n" * start + "".join(lines[start:end]))
        except YAMLError as exc:
            error = _yaml_error(path, exc)
            names = _NAME.findall("".join(lines[start:end]))
            shown = f" (objects {', '.join(names)})" if names else ""
            line = min(error.line or end, end)  # "<stream end>": the item's last line
            error = ConfigError(
                f"{error.problem}; lines {start + 1}-{end}{shown} are not loaded, the rest "
                "of the file is",
                location=Location(path, line),
            )
            errors.append(error)
            lost.update(dict.fromkeys(names, error))
            continue
        if data is not None:
            parts.append(data)
    kinds = {type(part) for part in parts}
    if not errors or len(kinds) > 1:  # the file's error is not in one item: load none of it
        return [], [whole], dict.fromkeys(_NAME.findall(text), whole)
    return parts, errors, lost


def _load(text: str) -> Any:
    return YAML(typ="rt").load(text)


def _yaml_error(path: Path, exc: YAMLError) -> ConfigError:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        return ConfigError(f"invalid YAML: {problem}", location=Location(path, line))
    return ConfigError(f"invalid YAML: {exc}", location=Location(path))


_OBJECT_KEY = re.compile(r"^(name|class)\s*:")
_NAME = re.compile(r"^[\s-]*name:\s*([A-Za-z_]\w*)\s*(?:#.*)?$", re.MULTILINE)


def _top_level_parts(lines: list[str]) -> list[tuple[int, int]]:
    """The line ranges ``[start, end)`` of a file's top-level items: list items (``- ``) or
    section keys, each beginning at column 0; comments and document markers begin none.

    A file that is one object (``name:`` and ``class:`` at column 0) has no parts: its keys
    mean nothing apart; nor has a file with document markers (``---``: one document a file).
    """
    if any(_OBJECT_KEY.match(line) or line.startswith(("---", "...")) for line in lines):
        return []
    starts = [
        index
        for index, line in enumerate(lines)
        if line[:1] not in ("", " ", "\t", "#", "\n", "\r")
    ]
    if not starts:
        return []
    bounds = [0, *starts[1:], len(lines)]
    return list(itertools.pairwise(bounds))


class _Walker:
    def __init__(self, tree: Tree, path: Path, definitions: dict[str, list[Location]]) -> None:
        self.tree = tree
        self.path = path
        self.definitions = definitions

    def at(self, line0: int) -> Location:
        return Location(self.path, line0 + 1)

    def error(
        self, problem: str, line0: int, obj: str | None = None, field: str | None = None
    ) -> None:
        self.tree.errors.append(
            ConfigError(problem, location=self.at(line0), object=obj, field=field)
        )

    def file(self, data: Any) -> None:
        if data is None:
            return
        if isinstance(data, CommentedMap):
            if "name" in data or "class" in data:
                self.top_object(data)
                return
            for key in data:
                line = data.lc.key(key)[0]
                if not isinstance(key, str):
                    self.error(f"top-level key {key!r} is not a string", line)
                    continue
                value = data[key]
                self.tree.sections.setdefault(key, []).append(
                    Section(key, to_plain(value), self.at(line), value)
                )
                self.value(value, parent=None)
        elif isinstance(data, CommentedSeq):
            for index, item in enumerate(data):
                if isinstance(item, CommentedMap) and ("name" in item or "class" in item):
                    self.top_object(item)
                else:
                    self.error(
                        f"item {index} of a top-level list is not an object "
                        "(a mapping with a name and a class)",
                        data.lc.item(index)[0],
                    )
        else:
            self.error(
                "expected a mapping (an object, or sections) or a list of objects at the top "
                f"of the file, got {type(data).__name__}",
                0,
            )

    def top_object(self, node: CommentedMap) -> None:
        if "class" not in node:
            name = node.get("name")
            self.error(
                "has a name but no class: add 'class: package.module:Class' or a registered "
                "short name",
                node.lc.line,
                obj=str(name),
            )
            if isinstance(name, str):
                self.tree.not_objects.setdefault(name, self.at(node.lc.line))
            return
        self.named(node, parent=None)

    def named(self, node: CommentedMap, parent: str | None) -> None:
        """A mapping with a class (an object), or with a name inside an object (a child)."""
        name = node.get("name")
        name_line = node.lc.key("name")[0] if "name" in node else node.lc.line
        if name is None:
            self.error("has a class but no name", node.lc.line, field="name")
            return
        if not isinstance(name, str) or not name.isidentifier():
            self.error(
                f"name {name!r} is not a valid Python identifier (letters, digits, _)",
                name_line,
                obj=str(name),
                field="name",
            )
            return
        class_name = node.get("class")
        if class_name is not None and not isinstance(class_name, str):
            self.error(
                f"class must be a string, got {class_name!r}",
                node.lc.key("class")[0],
                obj=name,
                field="class",
            )
            return
        location = self.at(name_line)
        self.definitions.setdefault(name, []).append(location)
        if name not in self.tree.objects:
            self.tree.objects[name] = ObjectInfo(
                name, class_name, None if class_name else parent, location, node
            )
            if class_name is None and parent is not None:
                owner = self.tree.objects.get(parent)
                if owner is not None:
                    owner.children.append(name)
        for key in node:
            if key not in ("name", "class"):
                self.value(node[key], parent=name)

    def value(self, node: Any, parent: str | None) -> None:
        if isinstance(node, CommentedMap):
            name = node.get("name")
            if "class" in node or (isinstance(name, str) and parent is not None):
                self.named(node, parent)
                return
            if isinstance(name, str):  # section data (a session, a workflow), not an object
                self.tree.not_objects.setdefault(name, self.at(node.lc.line))
            for key in node:
                self.value(node[key], parent)
        elif isinstance(node, CommentedSeq):
            for item in node:
                self.value(item, parent)


# ---------------------------------------------------------------------------- helpers


def is_inline_object(node: Any) -> bool:
    return isinstance(node, CommentedMap) and "class" in node and isinstance(node.get("name"), str)


def to_plain(node: Any) -> Any:
    """ruamel's commented containers and scalar subclasses -> dict, list, str, int, float."""
    if isinstance(node, dict):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.datetime | datetime.date):
        return node
    return node


def locate(file: Path, node: Any, path: tuple[str | int, ...], default_line: int = 0) -> Location:
    """The deepest line reachable along ``path`` (a pydantic error location) in ``node``."""
    line = default_line
    if isinstance(node, CommentedMap | CommentedSeq) and node.lc.line is not None:
        line = node.lc.line + 1
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return Location(file, line)
