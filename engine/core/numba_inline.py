"""Numba's IR inliner without its redundant copies: most of a cold compile, removed.

Every hot helper here is ``@njit(inline="always")``: Numba splices its IR into each caller, so the loops
carry no call overhead and no reference counting per helper. The price is at compile time. For each
call site, ``InlineWorker.inline_function`` (numba 0.68) builds the callee's IR afresh by running its
untyped pipeline, then ``inline_ir`` deep-copies that IR twice, block by block; every block's copy also
copies the function's whole variable scope, so a large callee costs blocks x variables per site
(numba/numba#8989). Nested inline helpers multiply the sites: the backtest loop has 866, and 63% of its
cold compile (279 s on the 2-core reference machine) was those copies.

The IR built for one call site belongs to that site alone: nothing else holds it, and the "unmutated
original" the second copy preserves is discarded by the only caller (``InlineInlinables``). So the
copies protect nothing on that path, and :func:`skip_redundant_copies` replaces ``inline_function``
with one that splices the fresh IR itself. ``inline_ir`` is untouched, and still copies when it is
reached another way (typed overload inlining passes it shared IR). The generated code is the same:
the same IR reaches type inference and LLVM, only its copies are gone.

Measured on the backtest group (the biggest): 281 s cold with Numba's inliner, 144 s with this one
(bench/results/2026-12-07-compile). ``engine/__init__.py`` calls :func:`install_on_import`, so the patch
is in place in every process that imports hftmm, the moment Numba loads its inliner (importing hftmm
still loads no Numba: ``hftmm --help`` stays fast).

The patch depends on Numba's internals, so it applies only to the Numba versions it was checked
against (:data:`CHECKED_VERSIONS`); on any other, compiles are slower but unchanged, and the test
that checks the patch is active fails, which is the prompt to check the new version.
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

INLINER = "numba.core.inline_closurecall"
CHECKED_VERSIONS = ("0.68.",)  # inline_function / inline_ir read and verified for these releases


class _AsTheyAre:
    """Stands in for the ``copy`` module inside ``inline_ir`` while it splices IR built for one site."""

    @staticmethod
    def deepcopy(value: Any, memo: dict | None = None) -> Any:
        return value


def _inline_fresh_ir(self: Any, caller_ir: Any, block: Any, i: int, function: Any, arg_typs: Any = None) -> tuple:
    """``InlineWorker.inline_function``, splicing the IR it has just built without copying it."""
    inliner = sys.modules[INLINER]
    callee_ir = self.run_untyped_passes(function)
    inliner.copy = _AsTheyAre  # the module's only use of copy is inline_ir's copy of the callee
    try:
        return self.inline_ir(caller_ir, block, i, callee_ir, function.__code__.co_freevars, arg_typs=arg_typs)
    finally:
        inliner.copy = copy


_inline_fresh_ir.skips_copies = True  # type: ignore[attr-defined]


def active() -> bool:
    """True when Numba's inliner is loaded and runs without the redundant copies."""
    inliner = sys.modules.get(INLINER)
    return inliner is not None and getattr(inliner.InlineWorker.inline_function, "skips_copies", False)


def skip_redundant_copies() -> bool:
    """Install the copy-free ``inline_function`` on a checked Numba version; True when it is in place."""
    import numba
    from numba.core import inline_closurecall

    if not active() and numba.__version__.startswith(CHECKED_VERSIONS):
        inline_closurecall.InlineWorker.inline_function = _inline_fresh_ir
    return active()


class _PatchAfterExec(importlib.abc.Loader):
    """Loads Numba's inliner with its own loader, then installs the patch."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        skip_redundant_copies()

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ...: the file loader's own
        return getattr(self._loader, name)


class _OnImport(importlib.abc.MetaPathFinder):
    """Waits for the import of Numba's inliner (once), to patch it as it loads."""

    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != INLINER:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchAfterExec(spec.loader)
        return spec


def install_on_import() -> None:
    """Patch the inliner now if Numba has loaded it, else as soon as it does (without importing Numba)."""
    if INLINER in sys.modules:
        skip_redundant_copies()
    elif not any(isinstance(f, _OnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OnImport())
