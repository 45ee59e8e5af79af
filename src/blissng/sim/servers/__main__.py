"""``python -m blissng.sim.servers --spec SPEC``: run a sim host (SPEC: JSON text or a file)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio

from blissng.sim._process import announce_ready
from blissng.sim.servers._host import SimHostServer
from blissng.sim.servers._spec import HostSpec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m blissng.sim.servers", description=__doc__)
    parser.add_argument("--spec", required=True, help="host spec: JSON text or a JSON file")
    parser.add_argument("--no-stdin-watch", action="store_true", help="ignore stdin closing")
    options = parser.parse_args(argv)
    text = options.spec
    if not text.lstrip().startswith("{"):
        text = Path(text).read_text()
    spec = HostSpec.model_validate_json(text)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    anyio.run(SimHostServer(spec).run, announce_ready, not options.no_stdin_watch)


if __name__ == "__main__":
    main()
