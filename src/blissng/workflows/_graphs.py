"""Turn what a user passes as ``workflow`` into an Ewoks graph (a plain dict) on the client.

The graph is loaded here, not in the worker: ewoksjob 1.5 sends a file *path* to the worker
instead of the graph (its ``submit_graph`` does not load the file on the client), and a Celery
worker on another machine may not see the file at all. A dict is also what we can pickle to a
local worker process.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ._errors import InvalidInputs, WorkflowNotFound

GRAPH_SUFFIXES = (".json", ".yml", ".yaml")


@dataclass(frozen=True)
class LoadedWorkflow:
    """A graph ready to send, and the name a job document shows for it."""

    name: str
    graph: dict[str, Any]
    source: str  # "file:<path>", "config:<name>", "dict", "package:<name>"


def load_graph_file(path: Path) -> dict[str, Any]:
    """Read an Ewoks JSON or YAML file; errors name the file."""
    if path.suffix not in GRAPH_SUFFIXES:
        raise WorkflowNotFound(
            f"{path}: an Ewoks workflow file ends in {', '.join(GRAPH_SUFFIXES)}"
        )
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkflowNotFound(f"cannot read workflow file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            from ruamel.yaml import YAML

            data = YAML(typ="safe").load(text)
    except Exception as exc:
        raise WorkflowNotFound(
            f"workflow file {path} is not valid {path.suffix[1:]}: {exc}"
        ) from None
    return check_graph(data, str(path))


def check_graph(data: Any, where: str) -> dict[str, Any]:
    """The few things every Ewoks graph has; a clear error instead of a KeyError in a worker."""
    if not isinstance(data, Mapping):
        raise WorkflowNotFound(
            f"{where}: an Ewoks workflow is a mapping, got {type(data).__name__}"
        )
    nodes = data.get("nodes")
    if not isinstance(nodes, Sequence) or isinstance(nodes, str) or not nodes:
        raise WorkflowNotFound(f"{where}: an Ewoks workflow needs a non-empty 'nodes' list")
    for node in nodes:
        if not isinstance(node, Mapping) or "id" not in node or "task_identifier" not in node:
            raise WorkflowNotFound(
                f"{where}: every node needs an 'id' and a 'task_identifier' (got {node!r})"
            )
    return copy.deepcopy(dict(data))


def graph_name(graph: Mapping[str, Any], default: str) -> str:
    info = graph.get("graph")
    if isinstance(info, Mapping) and info.get("id"):
        return str(info["id"])
    return default


def packaged_workflows() -> dict[str, Path]:
    """Workflows shipped with blissng (``blissng/workflows/demo/*.json``), by file stem."""
    folder = resources.files("blissng.workflows") / "demo"
    found: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(GRAPH_SUFFIXES):
            found[Path(entry.name).stem] = Path(str(entry))
    return found


def load_workflow(
    workflow: str | Path | Mapping[str, Any],
    named: Mapping[str, str | Path | Mapping[str, Any]] | None = None,
    base_dir: Path | None = None,
) -> LoadedWorkflow:
    """``workflow`` is a graph dict, a name in ``named`` (the configuration's ``workflows.graphs``),
    the name of a workflow shipped with blissng, or a path to a JSON/YAML file (relative paths
    are tried against ``base_dir`` then the working directory)."""
    named = named or {}
    if isinstance(workflow, Mapping):
        graph = check_graph(workflow, "workflow dict")
        return LoadedWorkflow(graph_name(graph, "workflow"), graph, "dict")
    if not isinstance(workflow, str | Path):
        raise WorkflowNotFound(
            f"a workflow is a file path, a configured name or a dict, not {type(workflow).__name__}"
        )
    key = str(workflow)
    if key in named:
        entry = named[key]
        if isinstance(entry, Mapping):
            graph = check_graph(entry, f"configured workflow {key!r}")
        else:
            path = _resolve(Path(entry), base_dir)
            graph = load_graph_file(path)
        return LoadedWorkflow(key, graph, f"config:{key}")
    path = Path(key)
    if path.suffix in GRAPH_SUFFIXES:
        resolved = _resolve(path, base_dir)
        if not resolved.is_file():
            raise WorkflowNotFound(
                f"workflow file {key} not found"
                + (f" (looked in {base_dir} and the working directory)" if base_dir else "")
            )
        return LoadedWorkflow(path.stem, load_graph_file(resolved), f"file:{resolved}")
    shipped = packaged_workflows()
    if key in shipped:
        return LoadedWorkflow(key, load_graph_file(shipped[key]), f"package:{key}")
    choices = sorted(set(named) | set(shipped))
    raise WorkflowNotFound(
        f"no workflow named {key!r}: give a .json/.yml file, or one of "
        f"{', '.join(choices) if choices else '(none configured under workflows.graphs)'}"
    )


def pending_workflow(workflow: str | Path) -> LoadedWorkflow:
    """A stand-in until the file is read: the name a user would expect, no graph yet."""
    path = Path(str(workflow))
    name = path.stem if path.suffix in GRAPH_SUFFIXES else str(workflow)
    return LoadedWorkflow(name, {}, "pending")


def _resolve(path: Path, base_dir: Path | None) -> Path:
    path = path.expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


def normalize_inputs(
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    graph: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Ewoks' list of inputs from what a user gives:

    - ``{"name": value}`` sets an input of the start nodes;
    - ``{"node_id": {"name": value}}`` (a key that is a node of the graph, a mapping value)
      sets inputs of that node;
    - a list is Ewoks' own form (``[{"id": node, "name": ..., "value": ...}]``).
    """
    if inputs is None:
        return []
    if isinstance(inputs, Mapping):
        node_ids = {str(n.get("id")) for n in (graph or {}).get("nodes", [])}
        result: list[dict] = []
        for name, value in inputs.items():
            if name in node_ids and isinstance(value, Mapping):
                result += [{"id": name, "name": k, "value": v} for k, v in value.items()]
            else:
                result.append({"name": name, "value": value})
        return result
    result = []
    for item in inputs:
        if not isinstance(item, Mapping) or "name" not in item or "value" not in item:
            raise InvalidInputs(
                f"each workflow input is a mapping with 'name' and 'value' (and 'id' for a "
                f"node), got {item!r}"
            )
        result.append(dict(item))
    return result
