"""The README stays true: every command of its ``bash runnable`` blocks runs as shown, in order, in one folder,
and prints JSON with the keys its ``# keys:`` comment names."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.integration.test_cli import run

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```bash runnable\n(.*?)^```", re.S | re.M)


def runnable_commands(text: str) -> list[tuple[list[str], list[str]]]:
    """(argv after ``hftmm``, documented JSON keys) of every line of every runnable block."""
    commands = []
    for block in BLOCK.findall(text):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            if not command.strip():
                continue
            argv = shlex.split(command)
            assert argv[0] == "hftmm", f"a runnable README line must be an hftmm command: {line!r}"
            keys = comment.strip().removeprefix("keys:").split(",") if comment.strip().startswith("keys:") else []
            commands.append((argv[1:], [k.strip() for k in keys if k.strip()]))
    return commands


def test_the_readme_has_runnable_commands() -> None:
    assert len(runnable_commands(README.read_text())) >= 5


def test_every_runnable_readme_command_works_as_documented(tmp_path: Path) -> None:
    for argv, keys in runnable_commands(README.read_text()):
        done = run(*argv, cwd=tmp_path)
        assert done.returncode == 0, f"hftmm {' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}"
        if keys:
            printed = json.loads(done.stdout)
            missing = [k for k in keys if k not in printed]
            assert not missing, f"hftmm {' '.join(argv)}: no {missing} in its JSON"
