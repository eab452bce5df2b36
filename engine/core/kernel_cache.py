"""Where Numba's on-disk cache of compiled kernels lives, decided once for every way hftmm is run.

``make``, ``.venv/bin/hftmm``, a notebook, Ray workers and node processes all find the kernels compiled
by any of them: ``engine/__init__.py`` calls :func:`use_kernel_cache` before any kernel module is
imported, and the choice goes to child processes through ``NUMBA_CACHE_DIR``.

- ``NUMBA_CACHE_DIR`` set by the user wins, used as it is.
- Otherwise ``$XDG_CACHE_HOME/hftmm/numba`` (``~/.cache/hftmm/numba``), in a folder keyed by the source
  tree and the state of its files (``<tree>-<state>``). Numba checks a cached kernel against its own
  file only, not against the jitted code it inlined from other modules; a new key whenever any source
  file changes is what keeps a kernel from outliving an edit to a function it calls. Older states of
  the same tree are removed when a new one is made; other trees (checkouts, worktrees) keep theirs.

Numba reads ``NUMBA_CACHE_DIR`` when it is imported and each ``cache=True`` kernel picks its cache
folder when its module is imported, so this module must not import numba, and runs first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

ENV = "NUMBA_CACHE_DIR"
SOURCE_PACKAGES = ("engine", "feeds", "strategies", "bench")  # every package that holds jitted code
NO_KERNELS = ("cli",)  # folders of those packages without jitted code: editing them keeps the cache
SOURCE_SUFFIX = ".py"
KEY_CHARS = 12


def default_base(environ: os._Environ | dict[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/hftmm/numba``, or ``~/.cache/hftmm/numba`` (the XDG base directory rule)."""
    cache_home = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "hftmm" / "numba"


def source_root() -> Path:
    """The folder holding the ``engine`` package (the checkout, or site-packages when installed)."""
    return Path(__file__).resolve().parents[2]


def _source_files(root: Path, packages: Iterable[str]) -> list[Path]:
    files = []
    for package in packages:
        for folder, dirs, names in os.walk(root / package):
            dirs[:] = sorted(d for d in dirs if d not in (*NO_KERNELS, "__pycache__") and not d.startswith("."))
            files += [Path(folder) / n for n in sorted(names) if n.endswith(SOURCE_SUFFIX)]
    return files


def cache_key(root: Path, packages: Iterable[str] = SOURCE_PACKAGES) -> str:
    """``<tree>-<state>``: a hash of the tree's path, then of every source file's path, size and mtime."""
    tree = hashlib.sha1(str(root).encode()).hexdigest()[:KEY_CHARS]
    state = hashlib.sha1()
    for path in _source_files(root, packages):
        st = path.stat()
        state.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{tree}-{state.hexdigest()[:KEY_CHARS]}"


def kernel_cache_dir(base: Path, root: Path, packages: Iterable[str] = SOURCE_PACKAGES) -> Path:
    """The cache folder of ``root``'s present sources under ``base``; made when new, with the same tree's
    folders of older source states removed."""
    key = cache_key(root, packages)
    folder = base / key
    if not folder.is_dir():
        tree = key.split("-")[0]
        for old in base.glob(f"{tree}-*") if base.is_dir() else ():
            shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def use_kernel_cache() -> str | None:
    """Point Numba (this process and its children) at the kernel cache; the folder, or None when neither
    ``NUMBA_CACHE_DIR`` nor a writable user cache folder exists (Numba's own default then)."""
    chosen = os.environ.get(ENV)
    if not chosen:
        try:
            chosen = str(kernel_cache_dir(default_base(), source_root()))
        except OSError:  # no home, a read-only file system: Numba's default (beside the sources)
            return None
        os.environ[ENV] = chosen
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba came first (a notebook): kernels imported from now on follow
        numba_config.CACHE_DIR = chosen
    return chosen
