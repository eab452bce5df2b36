"""The setup script a fresh machine runs first: it must find Python >= 3.12 or say what to install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def _copy_setup(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "venv.sh", project / "scripts" / "venv.sh")
    shutil.copy(REPO / ".python-version", project / ".python-version")
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    return project


def test_venv_script_without_any_python_312_says_what_to_install(tmp_path: Path) -> None:
    project = _copy_setup(tmp_path)
    empty_pyenv = tmp_path / "no-pyenv"
    bin_dir = tmp_path / "bin"  # only the tools the script needs, and no python at all
    bin_dir.mkdir()
    for tool in ("bash", "tr", "dirname", "rm", "touch"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    proc = subprocess.run(
        ["bash", "scripts/venv.sh"],
        cwd=project,
        env={"PATH": str(bin_dir), "PYENV_ROOT": str(empty_pyenv), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "needs Python >= 3.12" in proc.stderr
    assert "install" in proc.stderr
    assert not (project / ".venv").exists()
