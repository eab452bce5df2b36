"""MoldUDP64 1.00 downstream framing and per-session sequence tracking.

MoldUDP64 carries a stream of sequenced messages (here ITCH 5.0) in UDP datagrams. Every number is
big-endian. A downstream packet::

     0  session          10  ASCII session name (e.g. "000010059B"), the same for a whole day
    10  sequence          8  u64 sequence number of the first message in the packet
    18  message count     2  u16: 0 = heartbeat, 0xFFFF = end of session, else that many blocks
    20  message blocks       count x [u16 length][length bytes of message]

A heartbeat or end-of-session packet has no blocks; its sequence is the next expected sequence, so
it can reveal a gap. A re-request packet (listener -> re-request server) has the header's layout::

     0  session          10
    10  sequence          8  first sequence number wanted
    18  requested count   2  how many messages

Decoding is numba: :func:`decode_packet_nb` frames one packet and hands every message to
``feeds.itch.decode_message_nb`` with ``seq = packet seq + index``; :func:`decode_packets_nb` does a
whole chunk of packets in one call. Sequence state lives in one int64 array (see
:func:`new_tracker`) so that it crosses the jitted boundary without Python objects;
:class:`SequenceTracker` reads it for reports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit

from feeds.bytes_nb import u16_nb, u64_nb
from feeds.itch import decode_message_nb

# --- layout --------------------------------------------------------------------------------------
SESSION_OFFSET = 0
SESSION_LENGTH = 10
SEQUENCE_OFFSET = 10
COUNT_OFFSET = 18
HEADER_LENGTH = 20
BLOCK_LENGTH_SIZE = 2

COUNT_HEARTBEAT = 0
COUNT_END_OF_SESSION = 0xFFFF
MAX_MESSAGES_PER_PACKET = 0xFFFE

HEADER_DTYPE = np.dtype([("session", "S10"), ("seq", ">u8"), ("count", ">u2")])
REQUEST_DTYPE = np.dtype([("session", "S10"), ("seq", ">u8"), ("requested_count", ">u2")])
assert HEADER_DTYPE.itemsize == HEADER_LENGTH == REQUEST_DTYPE.itemsize

_HEADER = struct.Struct(">10sQH")
_BLOCK_LENGTH = struct.Struct(">H")

# --- status codes of the jitted decoders ---------------------------------------------------------
OK = 0
FULL = 1  # output rows or gap log full: drain them and call again from the same packet
ERR_SHORT_PACKET = -1  # shorter than the 20-byte header
ERR_BLOCK_OVERRUN = -2  # a message block (or its length field) runs past the end of the packet
ERR_TRAILING_BYTES = -3  # bytes left after the last message block
ERR_MESSAGE = -4  # the ITCH decoder rejected a message (unknown type or wrong length)
ERR_TOO_MANY_SESSIONS = -5  # more distinct sessions than the tracker holds

STATUS_TEXT = {
    ERR_SHORT_PACKET: "MoldUDP64 packet shorter than its 20-byte header",
    ERR_BLOCK_OVERRUN: "MoldUDP64 message block runs past the end of the packet",
    ERR_TRAILING_BYTES: "bytes after the last MoldUDP64 message block",
    ERR_MESSAGE: "ITCH message rejected by the decoder",
    ERR_TOO_MANY_SESSIONS: "too many MoldUDP64 sessions in one feed",
}

# --- tracker layout: one int64 array -------------------------------------------------------------
MAX_SESSIONS = 8
GAP_LOG_CAPACITY = 1024

T_SESSIONS = 0  # sessions in use
T_GAP_ENTRIES = 1  # entries in the gap log, drained by the reader
T_HEADER_WORDS = 2

# one record of SESSION_WORDS per session, from T_HEADER_WORDS
S_KEY_HI = 0  # session bytes 0-7, big-endian
S_KEY_LO = 1  # session bytes 8-9
S_NEXT_SEQ = 2  # next expected sequence number
S_PACKETS = 3  # data packets accepted (duplicates included)
S_MESSAGES = 4  # messages handed to the decoder
S_HEARTBEATS = 5
S_GAPS = 6
S_MISSING = 7  # messages never seen
S_FIRST_MISSING = 8  # first missing sequence number, -1 when none
S_DUPLICATES = 9  # packets entirely below the expected sequence
S_DUP_MESSAGES = 10  # messages skipped as already seen (duplicates and partial overlaps)
S_END_OF_SESSION = 11  # 1 once an end-of-session packet was seen
SESSION_WORDS = 12

GAP_LOG_OFFSET = T_HEADER_WORDS + MAX_SESSIONS * SESSION_WORDS
GAP_WORDS = 3  # session slot, first missing sequence, missing count
TRACKER_WORDS = GAP_LOG_OFFSET + GAP_LOG_CAPACITY * GAP_WORDS


def new_tracker() -> np.ndarray:
    """A fresh tracker state array (no session seen yet)."""
    return np.zeros(TRACKER_WORDS, np.int64)


# --- Python codec --------------------------------------------------------------------------------
def _session_bytes(session: bytes | str) -> bytes:
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LENGTH:
        raise ValueError(f"session {raw!r} is longer than {SESSION_LENGTH} bytes")
    return raw.ljust(SESSION_LENGTH, b" ")


def encode_packet(session: bytes | str, seq: int, messages: list[bytes]) -> bytes:
    """A downstream packet carrying ``messages`` numbered from ``seq`` (tests, simulators)."""
    if not messages:
        raise ValueError("a data packet needs at least one message; use encode_heartbeat")
    if len(messages) > MAX_MESSAGES_PER_PACKET:
        raise ValueError(f"{len(messages)} messages exceed {MAX_MESSAGES_PER_PACKET} per packet")
    parts = [_HEADER.pack(_session_bytes(session), seq, len(messages))]
    for message in messages:
        parts.append(_BLOCK_LENGTH.pack(len(message)))
        parts.append(message)
    return b"".join(parts)


def encode_heartbeat(session: bytes | str, next_seq: int) -> bytes:
    """A heartbeat: no messages, the next sequence number the listener should expect."""
    return _HEADER.pack(_session_bytes(session), next_seq, COUNT_HEARTBEAT)


def encode_end_of_session(session: bytes | str, next_seq: int) -> bytes:
    """An end-of-session packet: the session is over, ``next_seq`` is one past its last message."""
    return _HEADER.pack(_session_bytes(session), next_seq, COUNT_END_OF_SESSION)


def decode_header(data: bytes) -> tuple[bytes, int, int]:
    """``(session, seq, count)`` of a downstream packet."""
    if len(data) < HEADER_LENGTH:
        raise ValueError(f"MoldUDP64 packet of {len(data)} bytes is shorter than its header")
    return _HEADER.unpack_from(data, 0)


def encode_request(session: bytes | str, seq: int, count: int) -> bytes:
    """A re-request for ``count`` messages from ``seq`` of ``session``."""
    return _HEADER.pack(_session_bytes(session), seq, count)


def decode_request(data: bytes) -> tuple[bytes, int, int]:
    """``(session, seq, requested_count)`` of a re-request packet (exactly 20 bytes)."""
    if len(data) != HEADER_LENGTH:
        raise ValueError(f"MoldUDP64 request of {len(data)} bytes, expected {HEADER_LENGTH}")
    return _HEADER.unpack(data)


def iter_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(seq, message)`` of every message block of one downstream packet (tests, tools)."""
    _, seq, count = decode_header(data)
    if count == COUNT_END_OF_SESSION:
        count = 0
    pos = HEADER_LENGTH
    for index in range(count):
        if pos + BLOCK_LENGTH_SIZE > len(data):
            raise ValueError(f"message block {index} header runs past the packet end")
        (length,) = _BLOCK_LENGTH.unpack_from(data, pos)
        pos += BLOCK_LENGTH_SIZE
        if pos + length > len(data):
            raise ValueError(f"message block {index} of {length} bytes runs past the packet end")
        yield seq + index, data[pos : pos + length]
        pos += length


# --- numba ---------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _session_slot_nb(tracker, key_hi, key_lo):
    """Base index of the session's record, creating it; -1 when the tracker is full."""
    used = tracker[T_SESSIONS]
    for slot in range(used):
        base = T_HEADER_WORDS + slot * SESSION_WORDS
        if tracker[base + S_KEY_HI] == key_hi and tracker[base + S_KEY_LO] == key_lo:
            return base
    if used == MAX_SESSIONS:
        return -1
    base = T_HEADER_WORDS + used * SESSION_WORDS
    tracker[T_SESSIONS] = used + 1
    tracker[base + S_KEY_HI] = key_hi
    tracker[base + S_KEY_LO] = key_lo
    tracker[base + S_NEXT_SEQ] = -1  # the first packet sets the expectation
    tracker[base + S_FIRST_MISSING] = -1
    return base


@njit(cache=True, nogil=True)
def _note_gap_nb(tracker, base, first_missing, missing):
    tracker[base + S_GAPS] += 1
    tracker[base + S_MISSING] += missing
    if tracker[base + S_FIRST_MISSING] < 0:
        tracker[base + S_FIRST_MISSING] = first_missing
    entry = GAP_LOG_OFFSET + tracker[T_GAP_ENTRIES] * GAP_WORDS
    tracker[entry] = (base - T_HEADER_WORDS) // SESSION_WORDS
    tracker[entry + 1] = first_missing
    tracker[entry + 2] = missing
    tracker[T_GAP_ENTRIES] += 1


@njit(cache=True, nogil=True)
def decode_packet_nb(buf, start, length, out, n, counts, directory, tracker, ts_local_ns):
    """Decode one MoldUDP64 packet ``buf[start:start+length]`` into ``out[n:]``.

    Returns ``(status, n, seq)``: the status (``OK``, ``FULL`` or an ``ERR_*``), the new row count
    and the sequence number concerned (the packet's, or the rejected message's; -1 when the header
    is unreadable). Framing is checked before any state changes, so a malformed packet leaves the
    tracker untouched. On ``ERR_MESSAGE`` the rows before the bad message stay and the expectation
    stops at the bad message, so the following packet reports the rest of this one as a gap.
    ``FULL`` changes nothing: drain ``out`` and the gap log, then call again.
    """
    end = start + length
    if length < HEADER_LENGTH:
        return ERR_SHORT_PACKET, n, np.int64(-1)
    seq = np.int64(u64_nb(buf, start + SEQUENCE_OFFSET))
    count = u16_nb(buf, start + COUNT_OFFSET)
    blocks = np.int64(0) if count == COUNT_END_OF_SESSION else count
    pos = start + HEADER_LENGTH
    for _ in range(blocks):
        if pos + BLOCK_LENGTH_SIZE > end:
            return ERR_BLOCK_OVERRUN, n, seq
        pos += BLOCK_LENGTH_SIZE + u16_nb(buf, pos)
        if pos > end:
            return ERR_BLOCK_OVERRUN, n, seq
    if pos != end:
        return ERR_TRAILING_BYTES, n, seq
    if n + blocks > out.shape[0] or tracker[T_GAP_ENTRIES] == GAP_LOG_CAPACITY:
        return FULL, n, seq

    key_hi = np.int64(u64_nb(buf, start + SESSION_OFFSET))
    key_lo = u16_nb(buf, start + SESSION_OFFSET + 8)
    base = _session_slot_nb(tracker, key_hi, key_lo)
    if base < 0:
        return ERR_TOO_MANY_SESSIONS, n, seq
    expected = tracker[base + S_NEXT_SEQ]
    if expected < 0:
        expected = seq
    if seq > expected:
        _note_gap_nb(tracker, base, expected, seq - expected)
        expected = seq

    if blocks == 0:  # heartbeat or end of session: the expectation moves only past a gap
        if count == COUNT_END_OF_SESSION:
            tracker[base + S_END_OF_SESSION] = 1
        else:
            tracker[base + S_HEARTBEATS] += 1
        tracker[base + S_NEXT_SEQ] = expected
        return OK, n, seq

    tracker[base + S_PACKETS] += 1
    if seq + blocks <= expected:
        tracker[base + S_DUPLICATES] += 1
        tracker[base + S_DUP_MESSAGES] += blocks
        tracker[base + S_NEXT_SEQ] = expected
        return OK, n, seq
    skip = expected - seq  # > 0 on a partial overlap with messages already seen
    tracker[base + S_DUP_MESSAGES] += skip
    pos = start + HEADER_LENGTH
    for index in range(blocks):
        message_length = u16_nb(buf, pos)
        pos += BLOCK_LENGTH_SIZE
        if index >= skip:
            rows = decode_message_nb(buf, pos, message_length, out, n, counts, directory, seq + index, ts_local_ns)
            if rows < 0:
                tracker[base + S_NEXT_SEQ] = seq + index
                tracker[base + S_MESSAGES] += index - skip
                return ERR_MESSAGE, n, seq + index
            n += rows
        pos += message_length
    tracker[base + S_MESSAGES] += blocks - skip
    tracker[base + S_NEXT_SEQ] = seq + blocks
    return OK, n, seq


@njit(cache=True, nogil=True)
def decode_packets_nb(buf, offsets, lengths, ts_ns, first, stop, out, n, counts, directory, tracker):
    """Decode packets ``first..stop-1`` (``buf[offsets[i]:offsets[i]+lengths[i]]``) in one call.

    Returns ``(status, index, n, seq)``: ``index`` is ``stop`` when every packet was decoded, else
    the packet that returned ``status`` (``FULL`` or an error, with ``seq`` as in
    :func:`decode_packet_nb`); the caller drains or reports it and resumes there (or after it).
    """
    for i in range(first, stop):
        status, n, seq = decode_packet_nb(buf, offsets[i], lengths[i], out, n, counts, directory, tracker, ts_ns[i])
        if status != OK:
            return status, i, n, seq
    return OK, stop, n, np.int64(-1)


# --- Python view ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionState:
    """Sequence report of one MoldUDP64 session."""

    session: str
    next_seq: int
    packets: int
    messages: int
    heartbeats: int
    gaps: int
    missing_messages: int
    first_missing_seq: int | None
    duplicate_packets: int
    duplicate_messages: int
    end_of_session: bool


class SequenceTracker:
    """The tracker state array and a readable view of it, for reports and for the readers."""

    def __init__(self, state: np.ndarray | None = None) -> None:
        self.state = state if state is not None else new_tracker()

    def sessions(self) -> list[SessionState]:
        """Every session seen, in order of first appearance."""
        result = []
        for slot in range(int(self.state[T_SESSIONS])):
            base = T_HEADER_WORDS + slot * SESSION_WORDS
            rec = self.state[base : base + SESSION_WORDS]
            key = int(rec[S_KEY_HI]).to_bytes(8, "big", signed=True) + int(rec[S_KEY_LO]).to_bytes(2, "big")
            first_missing = int(rec[S_FIRST_MISSING])
            result.append(
                SessionState(
                    session=key.decode("ascii", "replace"),
                    next_seq=int(rec[S_NEXT_SEQ]),
                    packets=int(rec[S_PACKETS]),
                    messages=int(rec[S_MESSAGES]),
                    heartbeats=int(rec[S_HEARTBEATS]),
                    gaps=int(rec[S_GAPS]),
                    missing_messages=int(rec[S_MISSING]),
                    first_missing_seq=first_missing if first_missing >= 0 else None,
                    duplicate_packets=int(rec[S_DUPLICATES]),
                    duplicate_messages=int(rec[S_DUP_MESSAGES]),
                    end_of_session=bool(rec[S_END_OF_SESSION]),
                )
            )
        return result

    def _total(self, field: int) -> int:
        used = int(self.state[T_SESSIONS])
        records = self.state[T_HEADER_WORDS : T_HEADER_WORDS + used * SESSION_WORDS]
        return int(records.reshape(used, SESSION_WORDS)[:, field].sum())

    @property
    def gaps(self) -> int:
        """Gaps over every session."""
        return self._total(S_GAPS)

    @property
    def missing_messages(self) -> int:
        """Messages never seen, over every session."""
        return self._total(S_MISSING)

    @property
    def duplicate_packets(self) -> int:
        """Packets wholly below the expected sequence, over every session."""
        return self._total(S_DUPLICATES)

    @property
    def end_of_session(self) -> bool:
        """True when every session seen has announced its end."""
        states = self.sessions()
        return bool(states) and all(s.end_of_session for s in states)

    def drain_gaps(self) -> list[tuple[str, int, int]]:
        """Take the logged gaps as ``(session, first_missing_seq, missing)`` and empty the log."""
        names = [s.session for s in self.sessions()]
        entries = int(self.state[T_GAP_ENTRIES])
        log = self.state[GAP_LOG_OFFSET : GAP_LOG_OFFSET + entries * GAP_WORDS].reshape(entries, GAP_WORDS)
        gaps = [(names[int(slot)], int(first), int(missing)) for slot, first, missing in log]
        self.state[T_GAP_ENTRIES] = 0
        return gaps
