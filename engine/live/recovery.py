"""What the live daemon needs to recover from a predecessor that died: whether a process still runs, the
shared-memory files a dead run left, and a summary of what each node was rebuilt with."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from engine.core.units import SHM_DIR
from engine.live.builder import NodeSpec
from engine.live.journal import JOURNAL_PREFIX, Recovered
from engine.runtime import metrics as M
from engine.runtime.control import CONTROL_PREFIX
from engine.trading import layout as TL
from engine.trading.oms import working_count_nb


def process_gone(pid: int) -> bool:
    """Whether no thread of process ``pid`` runs any more, so that its files and sockets are closed. A
    killed multi-threaded process shows its first thread as a zombie while the others are still exiting."""
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return False
    except (OSError, IndexError):  # the process, or a thread, vanished meanwhile
        return not Path(f"/proc/{pid}").exists()
    return True


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def process_cmdline(pid: int) -> bytes:
    """The command line of process ``pid`` (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def remove_stale_blocks(pids: set[int]) -> None:
    """Remove what dead daemons ``pids`` left in /dev/shm: node blocks, journal rings, their driver dir."""
    prefixes = tuple(f"{kind}{pid}-" for kind in (M.BLOCK_PREFIX, CONTROL_PREFIX, JOURNAL_PREFIX) for pid in pids)
    for name in os.listdir(SHM_DIR):
        if name.startswith(prefixes):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, name))
    for pid in pids:
        shutil.rmtree(os.path.join(SHM_DIR, f"hftmm-live-{pid}"), ignore_errors=True)


def recovery_summary(recovered: Recovered, spec: NodeSpec, files: list[str], records: int, from_ring: int) -> dict:
    """What one node recovered, for the notice and the report."""
    lots = recovered.inst[:, TL.IN_POSITION] * recovered.inst[:, TL.IN_LOT]
    return {
        "files": files,
        "records": records,
        "records_from_ring": from_ring,
        "working_orders": int(working_count_nb(recovered.own)),
        "position": {i.symbol: int(lots[j]) for j, i in enumerate(spec.instruments)},
        "realized_pnl": {i.symbol: float(recovered.money[j, TL.MN_REALIZED]) for j, i in enumerate(spec.instruments)},
        "resume_sequence": recovered.next_sequence,
        "highest_order_id": recovered.highest_id,
    }


def format_recovery(recovery: dict) -> str:
    """One line per node: what the daemon recovered from the run that died."""
    lines = [f"recovered from the live daemon that died (pid {recovery['pid']}):"]
    if not recovery["nodes"]:
        lines.append("  nothing journaled: every node starts flat")
    for name, got in recovery["nodes"].items():
        lines.append(
            f"  node {name}: {got['records']} journal records from {len(got['files'])} file(s) and "
            f"{got['records_from_ring']} from its ring; {got['working_orders']} working orders, position "
            f"{got['position']}; the session resumes at response {got['resume_sequence']}, order ids above "
            f"{got['highest_order_id']}"
        )
    return "\n".join(lines)
