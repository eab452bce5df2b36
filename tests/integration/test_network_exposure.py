"""Nothing a live session starts listens beyond loopback: every listening TCP socket and every UDP socket
held by ``hftmm live`` and the processes it starts (Ray's GCS, raylet, workers and agents, the trading
node, the embedded exchange) is bound to 127.0.0.1 or ::1, read from /proc as ``ss -lntup`` would."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from tests.integration.test_live import START_S, Daemon, metric

TCP_LISTEN = "0A"


def process_tree(root: int) -> set[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # gone meanwhile
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def socket_owners(pids: set[int]) -> dict[str, str]:
    """Socket inode -> ``pid (command)`` of the processes holding it."""
    owners: dict[str, str] = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = f"{pid} ({command})"
    return owners


def local_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a /proc/net table's ``local_address`` column (host-order 32-bit words)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def exposed_sockets(pids: set[int]) -> tuple[list[str], int]:
    """Listening TCP and bound UDP sockets of ``pids`` on a non-loopback address; and how many were seen."""
    owners = socket_owners(pids)
    exposed, seen = [], 0
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            columns = line.split()
            local, state, inode = columns[1], columns[3], columns[9]
            if inode not in owners or (table.startswith("tcp") and state != TCP_LISTEN):
                continue
            seen += 1
            address = local_address(local.split(":")[0])
            if not address.is_loopback:
                exposed.append(f"{table} {address}:{int(local.split(':')[1], 16)} held by {owners[inode]}")
    return exposed, seen


def test_a_live_session_listens_on_loopback_only(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_for(lambda body: metric(body, "hftmm_orders_sent_total") >= 1, START_S)
        pids = process_tree(daemon.proc.pid)
        exposed, seen = exposed_sockets(pids)
        assert any("raylet" in Path(f"/proc/{p}/comm").read_text() for p in pids if Path(f"/proc/{p}").exists())
        assert seen >= 5, "the session's sockets were not found"  # Ray's servers, metrics, market data at least
        assert exposed == []
        daemon.stop({})
    finally:
        daemon.kill()
