"""engine.live.recovery: telling whether a killed node process has let go of its sockets."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from engine.live.recovery import process_alive, process_gone

# a process with a second thread that keeps running: its threads exit one by one when it is killed
THREADED = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); time.sleep(60)"


def test_a_running_process_is_not_gone_and_a_killed_reaped_one_is() -> None:
    proc = subprocess.Popen([sys.executable, "-c", THREADED])
    try:
        deadline = time.monotonic() + 10
        while len(list(Path(f"/proc/{proc.pid}/task").iterdir())) < 2:
            assert time.monotonic() < deadline, "the child never started its second thread"
            time.sleep(0.01)
        assert process_alive(proc.pid) and not process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    assert process_gone(proc.pid) and not process_alive(proc.pid)
