"""The control block: a few int64 slots in ``/dev/shm`` that a supervisor and one trading node share.

The supervisor (the live daemon, the latency harness) writes ``CT_STOP`` (cancel everything, wait for
the acknowledgements, finish) and ``CT_KILL`` (the kill switch: cancel everything, quote no more, keep
running); the node writes its ``CT_STATE`` (``ST_*``), its process id (``CT_PID``) and its next client
order id (``CT_NEXT_ID``, so a restarted node continues above it: OUCH UserRefNums must rise within a
session). Read each duty cycle; plain aligned stores, one writer per slot.
"""

from __future__ import annotations

import os

import numpy as np

from engine.core.units import SHM_DIR

CONTROL_PREFIX = "hftmm-control-"  # /dev/shm/<prefix><daemon pid>-<node>
CT_STOP, CT_KILL, CT_STATE, CT_NEXT_ID, CT_PID = range(5)
CT_SLOTS = 8
ST_STARTING, ST_RUNNING, ST_STOPPING, ST_DONE = range(4)
STATE_NAMES = ("starting", "running", "stopping", "done")


class ControlBlock:
    """A few int64 slots in ``/dev/shm/<name>`` the daemon and one node share (see the module doc)."""

    def __init__(self, name: str, create: bool) -> None:
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        self.owner = create
        self.slots = np.memmap(self.path, np.int64, "w+" if create else "r+", shape=(CT_SLOTS,))
        if create:
            self.slots[:] = 0

    def close(self) -> None:
        """Drop the mapping (unmapped with its last view); the creator also removes the file."""
        self.slots = np.zeros(CT_SLOTS, np.int64)
        if self.owner and os.path.exists(self.path):
            os.unlink(self.path)
        self.owner = False
