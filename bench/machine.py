"""The machine a benchmark ran on, written next to every result so figures are never orphaned."""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path

import numba
import numpy as np


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (or the platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Host, CPU, core count, memory, kernel and the versions that shape the numbers."""
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def write_results(result: dict, name: str, lines: list[str], out_dir: str) -> Path:
    """Write ``result`` as JSON and ``lines`` as Markdown into ``out_dir/<date>-<name>/``, echo the table."""
    folder = Path(out_dir) / f"{result['date'][:10]}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nresults in {folder}/")
    return folder
