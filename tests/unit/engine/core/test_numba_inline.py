"""Numba's inliner without its redundant IR copies (engine.core.numba_inline): in place wherever hftmm is
imported, without importing Numba itself, and compiling to the same results as Numba's own inliner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core import inline_closurecall

from engine.core import numba_inline
from tests.conftest import REPO

TIMEOUT_S = 300

# Nested inline helpers: one called twice from one caller, one calling another twice, early returns, tuples,
# array writes, loops and the same local names in every function (the inliner renames them per site).
KERNELS = '''
import numpy as np
from numba import njit

@njit(inline="always")
def clip(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x

@njit(inline="always")
def step(a, i, x):
    y = clip(x, -5, 5)
    a[i] = y
    return y, clip(x * 2, -7, 7)

@njit(cache=False)
def run(n):
    a = np.zeros(n, np.int64)
    total = 0
    for i in range(n):
        x = 3 * i - n
        y, z = step(a, i, x)
        total += y * 3 + z
        if total > 40:
            y, z = step(a, i, -x)
            total -= z
    return total, a.sum()

sizes = (1, 5, 17, 40)
python = [tuple(map(int, run.py_func(n))) for n in sizes]
print("copy-free", CHECK(), "results", [run(n) for n in sizes], "python", python)
'''


def _run(prelude: str, tmp_path: Path) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    code = prelude + KERNELS.replace("CHECK", "copy_free")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


COPY_FREE = (
    "def copy_free():\n"
    "    from numba.core import inline_closurecall as ic\n"
    "    return getattr(ic.InlineWorker.inline_function, 'skips_copies', False)\n"
)


def test_importing_hftmm_loads_no_numba_and_patches_the_inliner_as_numba_loads_it(tmp_path: Path) -> None:
    prelude = (
        "import sys\nimport engine\n"
        "assert 'numba' not in sys.modules, 'importing engine must not load Numba'\n" + COPY_FREE
    )
    out = _run(prelude, tmp_path)
    assert out.startswith("copy-free True"), out


def test_the_copy_free_inliner_compiles_to_the_same_results_as_numbas_own(tmp_path: Path) -> None:
    patched = _run("import engine\n" + COPY_FREE, tmp_path / "patched")
    stock = _run(COPY_FREE, tmp_path / "stock")  # plain Numba: hftmm never imported
    assert patched.startswith("copy-free True") and stock.startswith("copy-free False")
    compiled, python = patched.split("results")[1].split("python")
    assert compiled.strip() == python.strip()  # the compiled kernel does what the Python function does
    assert patched.split("results")[1] == stock.split("results")[1]


def test_an_unchecked_numba_version_keeps_numbas_inliner(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    def numbas_own(*args: object) -> None:  # stands in for Numba's inline_function
        raise AssertionError("not called")

    monkeypatch.setattr(inline_closurecall.InlineWorker, "inline_function", numbas_own)
    monkeypatch.setattr(numba, "__version__", "0.99.0")
    assert not numba_inline.skip_redundant_copies()
    assert inline_closurecall.InlineWorker.inline_function is numbas_own
    monkeypatch.setattr(numba, "__version__", numba_inline.CHECKED_VERSIONS[0] + "1")
    assert numba_inline.skip_redundant_copies()
    assert numba_inline.active()
