"""Where Numba's cache lives: the package's choice by default, NUMBA_CACHE_DIR when the user sets it, a new
folder whenever a source file changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.core.kernel_cache import cache_key, default_base, kernel_cache_dir
from tests.conftest import REPO

TIMEOUT_S = 120


def _tree(root: Path) -> Path:
    (root / "engine" / "book").mkdir(parents=True)
    (root / "engine" / "__init__.py").write_text("")
    (root / "engine" / "book" / "book_nb.py").write_text("X = 1\n")
    (root / "engine" / "book" / "notes.txt").write_text("not a source file\n")
    return root


def test_default_base_is_under_xdg_cache_home_else_home_cache() -> None:
    assert default_base({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/hftmm/numba")
    assert default_base({}) == Path(os.path.expanduser("~")) / ".cache" / "hftmm" / "numba"


def test_key_changes_when_any_source_file_changes_and_not_otherwise(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    before = cache_key(root)
    assert cache_key(root) == before
    (root / "engine" / "book" / "notes.txt").write_text("edited, but not Python\n")
    assert cache_key(root) == before
    (root / "engine" / "book" / "book_nb.py").write_text("X = 22\n")
    assert cache_key(root) != before


def test_two_trees_get_different_keys(tmp_path: Path) -> None:
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert cache_key(first).split("-")[0] != cache_key(second).split("-")[0]


def test_a_new_source_state_replaces_the_old_folder_of_its_tree_and_keeps_other_trees(tmp_path: Path) -> None:
    base = tmp_path / "cache"
    mine, other = _tree(tmp_path / "mine"), _tree(tmp_path / "other")
    old = kernel_cache_dir(base, mine)
    kept = kernel_cache_dir(base, other)
    (old / "kernel.nbi").write_text("compiled")
    assert kernel_cache_dir(base, mine) == old and (old / "kernel.nbi").exists()  # unchanged sources: same folder
    (mine / "engine" / "book" / "book_nb.py").write_text("X = 3\n")
    new = kernel_cache_dir(base, mine)
    assert new != old and new.is_dir()
    assert not old.exists()
    assert kept.is_dir()


def _python(code: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    return {**env, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg"), **extra}


def test_kernels_compiled_after_importing_engine_are_cached_in_the_user_cache_folder(tmp_path: Path) -> None:
    module = tmp_path / "kernels_here"
    module.mkdir()
    (module / "tiny_nb.py").write_text(
        "from numba import njit\n\n\n@njit(cache=True)\ndef add_nb(x):\n    return x + 1\n"
    )
    code = (f"import engine, sys; sys.path.insert(0, {str(module)!r}); import numba, tiny_nb; "
            "assert tiny_nb.add_nb(1) == 2; print(numba.config.CACHE_DIR)")  # fmt: skip
    chosen = Path(_python(code, _env(tmp_path), tmp_path))
    assert chosen.parent == tmp_path / "xdg" / "hftmm" / "numba"
    assert list(chosen.rglob("*add_nb*.nbi")), "the kernel's index is not in the chosen folder"
    assert not list(module.rglob("*.nbi")), "the kernel was cached beside its source"


def test_numba_imported_before_engine_still_follows_the_package_choice(tmp_path: Path) -> None:
    code = "import numba, engine, os; c = numba.config.CACHE_DIR; print(c == os.environ['NUMBA_CACHE_DIR'], c)"
    same, chosen = _python(code, _env(tmp_path), tmp_path).split()
    assert same == "True"
    assert Path(chosen).parent == tmp_path / "xdg" / "hftmm" / "numba"


def test_numba_cache_dir_set_by_the_user_wins(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    code = "import engine, numba; print(numba.config.CACHE_DIR)"
    assert _python(code, _env(tmp_path, NUMBA_CACHE_DIR=str(mine)), tmp_path) == str(mine)
    assert not (tmp_path / "xdg").exists()


def test_editing_the_command_line_keeps_the_key(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    (root / "engine" / "cli").mkdir()
    (root / "engine" / "cli" / "main.py").write_text("A = 1\n")
    before = cache_key(root)
    (root / "engine" / "cli" / "main.py").write_text("A = 2  # no jitted code here\n")
    assert cache_key(root) == before
