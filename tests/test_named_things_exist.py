"""Every ``blissng.x.y`` the documents and the code's docstrings and comments name exists, and
every file of the repository the documents name.

Modules are renamed and names move behind faces; a page or a docstring that still names the
old place sends a reader (or a user's import) nowhere. This reads README.md, docs/ and
src/blissng for dotted names and resolves each one: the longest importable module, then
attributes. Names that are not Python paths (logger names, a Celery task name, a file name)
are recognised as such below.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import blissng

SOURCE = Path(blissng.__file__).parent
ROOT = SOURCE.parent.parent
DOTTED = re.compile(r"\bblissng(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?::[A-Za-z_][A-Za-z0-9_.]*)?")
LOGGER = re.compile(r"getLogger\(\s*\"(blissng[\w.]*)\"")
NOT_PYTHON = {
    "blissng.workflows.execute_graph",  # the Celery task's name (workflows/_celery_app.py)
    "blissng.lock",  # the embedded Redis's lock file
}


def _texts() -> dict[Path, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted(SOURCE.rglob("*.py"))
    return {path: path.read_text() for path in files}


def _logger_names(texts: dict[Path, str]) -> set[str]:
    return {name for text in texts.values() for name in LOGGER.findall(text)}


def resolves(name: str) -> bool:
    """Whether ``name`` (``package.module.attr`` or ``package.module:attr``) exists."""
    parts = name.replace(":", ".").split(".")
    for length in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:length]))
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("blissng"):
                return True  # it exists, but needs an extra not installed here (pytango...)
            continue
        except ImportError:
            continue
        for attribute in parts[length:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.timeout(120)
def test_every_dotted_name_in_the_docs_and_the_code_exists():
    texts = _texts()
    known_not_python = NOT_PYTHON | _logger_names(texts)
    missing: dict[str, set[str]] = {}
    for path, text in texts.items():
        for match in DOTTED.finditer(text):
            name = match.group(0).rstrip(".")
            if name not in known_not_python and not resolves(name):
                missing.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not missing, "names of nothing: " + "; ".join(
        f"{name} (in {', '.join(sorted(paths))})" for name, paths in sorted(missing.items())
    )


def test_the_resolver_tells_a_name_from_a_stale_one():
    assert resolves("blissng.errors.Aborted") and resolves("blissng.devices:Axis")
    assert not resolves("blissng.errors.NoSuchThing")
    assert not resolves("blissng.no_such_package.Thing")


def test_a_module_whose_extra_is_missing_still_exists(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tango", None)  # import tango -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "blissng.sim._tango_devices", raising=False)
    assert resolves("blissng.sim._tango_devices.SimTangoMotor")
    assert not resolves("blissng.sim._no_such_module.Thing")


PATH = re.compile(r"\b[\w.]+(?:/[\w.]+)*/\w+\.py\b")
EXAMPLES = {"tests/test_x.py"}  # a user's test file, in docs/getting-started.md


def test_every_source_file_the_docs_name_exists():
    missing = {
        f"{path} (in {doc.relative_to(ROOT)})"
        for doc, text in _texts().items()
        if doc.suffix == ".md"
        for path in PATH.findall(text)
        if path not in EXAMPLES
        and not any((base / path).exists() for base in (ROOT, ROOT / "src", SOURCE))
    }
    assert not missing, f"files the docs name that are not there: {sorted(missing)}"


TEST_REFERENCE = re.compile(r"([\w/]*test_\w+\.py)?::(test_\w+)")


def _named_tests(text: str) -> list[tuple[str, str]]:
    """``(file, test)`` for each ``tests/x/test_a.py::test_b`` of ``text``; a bare
    ``::test_c`` (the next test of one table cell) belongs to the file named before it."""
    found: list[tuple[str, str]] = []
    current = ""
    for file, test in TEST_REFERENCE.findall(text):
        current = file or current
        found.append((current, test))
    return found


def _test_defined(file: str, test: str) -> bool:
    tests = ROOT / "tests"
    candidates = [ROOT / file] if file.startswith("tests/") else list(tests.rglob(Path(file).name))
    pattern = re.compile(rf"^\s*(?:async\s+)?def {test}\(", re.MULTILINE)
    return any(path.exists() and pattern.search(path.read_text()) for path in candidates)


def test_every_test_the_docs_name_exists():
    """docs/reliability.md names the test behind each promise; a renamed test must not leave
    a promise that nothing shows."""
    named = [
        (doc.relative_to(ROOT), file, test)
        for doc, text in _texts().items()
        if doc.suffix == ".md"
        for file, test in _named_tests(text)
    ]
    assert len(named) > 40  # the reliability table alone names more
    missing = [
        f"{file}::{test} (in {doc})" for doc, file, test in named if not _test_defined(file, test)
    ]
    assert not missing, f"tests the docs name that do not exist: {missing}"


def test_the_test_finder_follows_a_cell_of_several_tests():
    cell = "`tests/test_a.py::test_one`, `::test_two`; `test_b.py::test_three`"
    assert _named_tests(cell) == [
        ("tests/test_a.py", "test_one"),
        ("tests/test_a.py", "test_two"),
        ("test_b.py", "test_three"),
    ]
    assert not _test_defined("test_named_things_exist.py", "test_nothing_of_that_name")
    assert _test_defined("test_named_things_exist.py", "test_every_test_the_docs_name_exists")
