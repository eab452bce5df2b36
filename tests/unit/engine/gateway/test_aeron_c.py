"""engine.gateway.aeron_c against a real embedded media driver: no mocks.

Loops in compiled helpers are bounded by iteration counts (a poll or an offer takes tens of ns,
so the bounds below are seconds at most); nothing asserts on time.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyaeron
import pytest
from numba import njit

from engine.gateway import aeron_c
from engine.gateway.aeron_c import (
    AERON_PUBLICATION_ADMIN_ACTION,
    AERON_PUBLICATION_BACK_PRESSURED,
    AERON_PUBLICATION_NOT_CONNECTED,
    INBOX_HANDLER,
    AeronCError,
    Client,
    inbox_clear,
    inbox_count,
    inbox_fragment,
    inbox_overflows,
    main_do_work_nb,
    make_inbox,
    offer_nb,
    offer_retry_nb,
    poll_nb,
)
from engine.runtime.aeron import DriverConfig, EmbeddedDriver

ROOT = Path(__file__).resolve().parents[4]
IPC = "aeron:ipc"
TERM_LENGTH = 64 * 1024  # window of an IPC publication: half of it
MAX_POLLS = 20_000_000
MAX_OFFERS = 20_000_000


@pytest.fixture(scope="module")
def aeron_dir() -> Iterator[str]:
    config = DriverConfig(
        dir=f"/dev/shm/hftmm-test-aeron-c-{os.getpid()}", term_length=TERM_LENGTH, ipc_term_length=TERM_LENGTH
    )
    with EmbeddedDriver(config) as driver:
        yield driver.dir


@pytest.fixture
def client(aeron_dir: str) -> Iterator[Client]:
    with Client(aeron_dir) as aeron:
        yield aeron


def connected_pair(client: Client, stream_id: int) -> tuple[int, int]:
    """An exclusive publication and a subscription on IPC ``stream_id``, connected to each other."""
    subscription = client.add_subscription(IPC, stream_id)
    publication = client.add_exclusive_publication(IPC, stream_id)
    client.await_connected(publication)
    client.await_connected(subscription)
    return publication, subscription


@njit(cache=True, nogil=True)
def drain(subscription: int, handler: int, inbox: np.ndarray, want: int) -> int:
    """Poll until ``want`` fragments were delivered (or MAX_POLLS polls); the fragments delivered."""
    address = inbox.ctypes.data
    delivered = 0
    for _ in range(MAX_POLLS):
        if delivered >= want:
            break
        delivered += poll_nb(subscription, handler, address, 10)
    return delivered


@njit(cache=True, nogil=True)
def round_trip(publication: int, subscription: int, handler: int, inbox: np.ndarray, messages: np.ndarray) -> int:
    """Offer each row of ``messages`` (with retries), then poll them all into the inbox; fragments delivered."""
    for row in range(messages.shape[0]):
        result, _ = offer_retry_nb(publication, messages[row], 0, messages.shape[1], MAX_OFFERS)
        if result < 0:
            return result
    return drain(subscription, handler, inbox, messages.shape[0])


@njit(cache=True, nogil=True)
def send_raw(publication: int, subscription: int, handler: int, inbox: np.ndarray, message: np.ndarray, count: int):
    """Send ``count`` numbered copies with single offers, draining as it goes; (sent, admin actions, back pressures)."""
    sent = admin_actions = back_pressures = 0
    address = inbox.ctypes.data
    for _ in range(MAX_OFFERS):
        if sent == count:
            break
        message[0] = sent % 256
        result = offer_nb(publication, message, 0, message.size)
        if result > 0:
            sent += 1
        elif result == AERON_PUBLICATION_ADMIN_ACTION:
            admin_actions += 1
        elif result == AERON_PUBLICATION_BACK_PRESSURED:
            back_pressures += 1
        else:
            return result, admin_actions, back_pressures
        poll_nb(subscription, handler, address, 10)
        inbox_clear(inbox)
    return sent, admin_actions, back_pressures


@njit(cache=True, nogil=True)
def send_with_retries(
    publication: int, subscription: int, handler: int, inbox: np.ndarray, message: np.ndarray, count: int
):
    """Send ``count`` copies with offer_retry_nb, draining between; (sent, offers needing a retry, last result)."""
    retried = 0
    result = 0
    address = inbox.ctypes.data
    for i in range(count):
        result, attempts = offer_retry_nb(publication, message, 0, message.size, MAX_OFFERS)
        if result < 0:
            return i, retried, result
        if attempts > 1:
            retried += 1
        for _ in range(MAX_POLLS):
            if poll_nb(subscription, handler, address, 10) == 0:
                break
        inbox_clear(inbox)
    return count, retried, result


@njit(cache=True, nogil=True)
def invoker_round_trip(aeron: int, publication: int, subscription: int, handler: int, inbox: np.ndarray) -> int:
    """One message through a client without conductor thread, running its duty cycle in the loop."""
    message = np.arange(16, dtype=np.uint8)
    for _ in range(MAX_POLLS):
        if main_do_work_nb(aeron) < 0:
            return -100
        if offer_retry_nb(publication, message, 0, message.size, 1000)[0] > 0:
            break
    for _ in range(MAX_POLLS):
        main_do_work_nb(aeron)
        if poll_nb(subscription, handler, inbox.ctypes.data, 10) > 0:
            break
    return inbox_count(inbox)


def fragments(inbox: np.ndarray) -> list[tuple[bytes, int]]:
    """(bytes, session id) of every fragment in the inbox."""
    out = []
    for index in range(inbox_count(inbox)):
        offset, length, session_id = inbox_fragment(inbox, index)
        out.append((inbox[offset : offset + length].tobytes(), session_id))
    return out


def test_result_codes_match_aeronc_h_through_pyaeron() -> None:
    assert aeron_c.AERON_PUBLICATION_NOT_CONNECTED == pyaeron.PUBLICATION_NOT_CONNECTED == -1
    assert aeron_c.AERON_PUBLICATION_BACK_PRESSURED == pyaeron.PUBLICATION_BACK_PRESSURED == -2
    assert aeron_c.AERON_PUBLICATION_ADMIN_ACTION == pyaeron.PUBLICATION_ADMIN_ACTION == -3
    assert aeron_c.AERON_PUBLICATION_CLOSED == pyaeron.PUBLICATION_CLOSED == -4
    assert aeron_c.AERON_PUBLICATION_MAX_POSITION_EXCEEDED == pyaeron.PUBLICATION_MAX_POSITION_EXCEEDED == -5


def test_round_trip_from_compiled_code(client: Client) -> None:
    publication, subscription = connected_pair(client, 1001)
    messages = np.arange(20 * 48, dtype=np.int64).astype(np.uint8).reshape(20, 48)
    inbox = make_inbox(64, 64 * 48)

    assert round_trip(publication, subscription, INBOX_HANDLER.address, inbox, messages) == 20
    assert inbox_count(inbox) == 20

    received = fragments(inbox)
    assert [payload for payload, _ in received] == [row.tobytes() for row in messages]
    assert len({session_id for _, session_id in received}) == 1
    assert inbox_overflows(inbox) == 0
    offsets = [inbox_fragment(inbox, i)[0] for i in range(20)]
    assert all(offset % 8 == 0 for offset in offsets)


def test_fragment_session_id_is_the_senders(aeron_dir: str, client: Client) -> None:
    subscription = client.add_subscription(IPC, 1002)
    ours = client.add_exclusive_publication(IPC, 1002)
    with pyaeron.Aeron(dir=aeron_dir) as other:
        theirs = other.add_exclusive_publication(IPC, 1002)
        theirs.await_connected(timeout=5)
        client.await_connected(ours)
        assert offer_nb(ours, np.frombuffer(b"ours", np.uint8).copy(), 0, 4) > 0
        assert theirs.offer(b"theirs")
        inbox = make_inbox(8, 256)
        assert drain(subscription, INBOX_HANDLER.address, inbox, 2) == 2
        by_payload = {payload: session_id for payload, session_id in fragments(inbox)}
        assert by_payload[b"theirs"] == theirs.session_id
        assert by_payload[b"ours"] != theirs.session_id


def test_inbox_full_counts_overflow_and_writes_nothing_outside(client: Client) -> None:
    publication, subscription = connected_pair(client, 1003)
    inbox = make_inbox(3, 96)  # 96 data bytes: two 40-byte fragments (8-byte aligned) fit
    guard = np.full(inbox.size + 64, 0xAB, np.uint8)
    guard[: inbox.size] = inbox
    view = guard[: inbox.size]
    messages = np.full((5, 40), 7, np.uint8)

    assert round_trip(publication, subscription, INBOX_HANDLER.address, view, messages) == 5
    assert inbox_count(view) == 2
    assert inbox_overflows(view) == 3
    assert (guard[inbox.size :] == 0xAB).all()

    inbox_clear(view)
    assert inbox_count(view) == 0 and inbox_overflows(view) == 3


def test_table_full_counts_overflow(client: Client) -> None:
    publication, subscription = connected_pair(client, 1004)
    inbox = make_inbox(2, 4096)
    messages = np.ones((4, 8), np.uint8)
    assert round_trip(publication, subscription, INBOX_HANDLER.address, inbox, messages) == 4
    assert inbox_count(inbox) == 2
    assert inbox_overflows(inbox) == 2


def test_not_connected_is_reported_not_retried(client: Client) -> None:
    publication = client.add_exclusive_publication(IPC, 1005)  # nobody subscribes to 1005
    message = np.zeros(48, np.uint8)
    assert offer_nb(publication, message, 0, 48) == AERON_PUBLICATION_NOT_CONNECTED
    assert offer_retry_nb(publication, message, 0, 48, 1_000_000) == (AERON_PUBLICATION_NOT_CONNECTED, 1)


def test_back_pressure_is_retried_until_the_window_opens(client: Client) -> None:
    publication, subscription = connected_pair(client, 1006)
    message = np.zeros(200, np.uint8)
    inbox = make_inbox(1024, 1024 * 200)
    outcomes = []
    for _ in range(5):  # the driver may raise the limit between drain and offer: then try again
        filled = 0
        result = 0
        for _ in range(10_000):  # until the window (half a term) is full; a term rotation is no stop
            result = offer_nb(publication, message, 0, message.size)
            if result > 0:
                filled += 1
            elif result != AERON_PUBLICATION_ADMIN_ACTION:
                break
        assert result == AERON_PUBLICATION_BACK_PRESSURED and filled > 0
        assert offer_retry_nb(publication, message, 0, message.size, 100) == (AERON_PUBLICATION_BACK_PRESSURED, 100)
        inbox_clear(inbox)
        assert drain(subscription, INBOX_HANDLER.address, inbox, filled) == filled
        # The subscriber has read everything; the limit moves when the driver's conductor next runs.
        result, attempts = offer_retry_nb(publication, message, 0, message.size, MAX_OFFERS)
        outcomes.append((result, attempts))
        inbox_clear(inbox)
        drain(subscription, INBOX_HANDLER.address, inbox, 1)
        if attempts > 1:
            break
    assert all(result > 0 for result, _ in outcomes)
    assert outcomes[-1][1] > 1, outcomes


def test_admin_action_at_term_end_is_retried(client: Client) -> None:
    publication, subscription = connected_pair(client, 1007)
    inbox = make_inbox(64, 64 * 1024)
    message = np.zeros(1000, np.uint8)  # 1056-byte frames: a 64 KiB term does not end on a frame
    count = 3 * TERM_LENGTH // 1056 + 10

    sent, admin_actions, _ = send_raw(publication, subscription, INBOX_HANDLER.address, inbox, message, count)
    assert sent == count
    assert admin_actions >= 3  # one per term rotation

    sent, retried, last = send_with_retries(publication, subscription, INBOX_HANDLER.address, inbox, message, count)
    assert (sent, last > 0) == (count, True)
    assert retried >= 3  # at least the rotations were retried, none was returned


def test_offer_rejects_out_of_bounds(client: Client) -> None:
    publication = client.add_exclusive_publication(IPC, 1008)
    with pytest.raises(IndexError):
        offer_nb(publication, np.zeros(8, np.uint8), 4, 8)
    with pytest.raises(IndexError):
        offer_nb(publication, np.zeros((4, 4), np.uint8)[:, 1], 0, 2)


def test_conductor_invoker_mode(aeron_dir: str) -> None:
    with Client(aeron_dir, use_conductor_invoker=True) as aeron:
        publication, subscription = connected_pair(aeron, 1009)
        inbox = make_inbox(4, 256)
        assert invoker_round_trip(aeron.client, publication, subscription, INBOX_HANDLER.address, inbox) == 1
        assert fragments(inbox)[0][0] == bytes(range(16))


def test_errors_are_one_line_and_name_the_request(client: Client) -> None:
    with pytest.raises(AeronCError) as error:
        client.add_subscription("aeron:nonsense", 1010)
    assert "add_subscription('aeron:nonsense', stream 1010)" in str(error.value)
    assert "\n" not in str(error.value)


def test_client_without_driver_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(AeronCError) as error:
        Client(str(tmp_path / "no-driver"), driver_timeout_ms=200)
    assert "\n" not in str(error.value)


def cache_probe() -> None:
    """Run in a fresh process: a round trip through cached code; print the cache statistics as JSON."""
    config = DriverConfig(dir=f"/dev/shm/hftmm-test-aeron-c-probe-{os.getpid()}")
    with EmbeddedDriver(config) as driver, Client(driver.dir) as aeron:
        publication, subscription = connected_pair(aeron, 2001)
        inbox = make_inbox(8, 1024)
        received = round_trip(publication, subscription, INBOX_HANDLER.address, inbox, np.ones((3, 48), np.uint8))
        stats = round_trip.stats
        report = {
            "received": int(received),
            "hits": sum(stats.cache_hits.values()),
            "misses": sum(stats.cache_misses.values()),
            "handler_hits": INBOX_HANDLER.cache_hits,
        }
    print(json.dumps(report))


def test_compiled_code_loads_from_cache_in_a_fresh_process(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache")}
    command = [sys.executable, "-c", "from tests.unit.engine.gateway import test_aeron_c as t; t.cache_probe()"]
    reports = []
    for _ in range(2):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = reports
    assert first["received"] == second["received"] == 3
    assert first["misses"] > 0 and first["handler_hits"] == 0  # compiled and saved
    assert second["hits"] > 0 and second["misses"] == 0  # loaded, not compiled
    assert second["handler_hits"] == 1  # the cfunc too


def outlive_driver() -> None:
    """Run in a fresh process: a client whose driver closes; print the errors its conductor reported."""
    config = DriverConfig(dir=f"/dev/shm/hftmm-test-aeron-c-gone-{os.getpid()}")
    driver = EmbeddedDriver(config)
    aeron = Client(driver.dir)
    driver.close()
    deadline = time.monotonic() + 10.0
    while aeron.errors[aeron_c.ERRORS_COUNT] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    aeron.close()
    print(json.dumps({"errors": int(aeron.errors[aeron_c.ERRORS_COUNT])}))


def test_a_client_outliving_its_driver_counts_the_error_and_the_process_lives_on() -> None:
    command = [sys.executable, "-c", "from tests.unit.engine.gateway import test_aeron_c as t; t.outlive_driver()"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # Aeron's default error handler exits the process
    assert json.loads(done.stdout.strip().splitlines()[-1])["errors"] >= 1


def test_a_client_dropped_without_close_is_closed_with_it(aeron_dir: str) -> None:
    """Its conductor would otherwise run on, writing its errors into freed memory once the driver goes."""
    aeron = Client(aeron_dir)
    aeron.add_subscription(IPC, 1020)
    handles = aeron._h
    assert handles.client and handles.subscriptions
    del aeron
    gc.collect()
    assert handles.client == 0 and handles.context == 0 and not handles.subscriptions
