"""Packet captures of a MoldUDP64 / ITCH 5.0 feed: classic pcap and pcapng, plain or gzip.

Classic pcap: a 24-byte file header, then records of a 16-byte header and the frame::

    file header   0 magic u4 (a1b2c3d4 us / a1b23c4d ns; its byte order is the file's)
                  4 version u2 u2   8 thiszone i4   12 sigfigs u4   16 snaplen u4   20 linktype u4
    record        0 ts_sec u4   4 ts_frac u4 (us or ns)   8 captured length u4   12 original length u4
                 16 frame (captured length bytes)

pcapng: blocks ``[type u4][total length u4][body][total length u4]``, 32-bit aligned, in the byte
order of the section header block (SHB, type 0a0d0d0a, byte-order magic 1a2b3c4d at +8). Used here:
IDB (1: link type u2 at +8, options from +16, ``if_tsresol`` code 9, ``if_tsoffset`` code 14), EPB
(6: interface u4 +8, timestamp high u4 +12, low u4 +16, captured u4 +20, original u4 +24, frame +28)
and SPB (3: original length u4 +8, frame +12, interface 0, no timestamp). Other blocks are skipped.

Frames: Ethernet (802.1Q / 802.1ad tags skipped), Linux cooked SLL and SLL2, raw IPv4; then IPv4
(IHL honoured; fragments counted and skipped), UDP, and the UDP payload is a MoldUDP64 packet.
Anything that is not IPv4/UDP is counted and ignored.

The container scan is numba, one call per chunk producing payload offsets, lengths and capture
timestamps; one ``feeds.moldudp64.decode_packets_nb`` call then decodes them. Packet numbers in
errors count capture records from 1, as Wireshark numbers frames.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterator

import numpy as np
from numba import njit

from engine.core.events import empty_events
from engine.core.units import NS_PER_S
from feeds import moldudp64 as mold
from feeds.errors import FeedError
from feeds.itch import StockDirectory, decode_message
from feeds.source import CHUNK_BYTES, FeedReader, FeedStats, read_chunks

# --- file formats --------------------------------------------------------------------------------
PCAP_HEADER_LENGTH = 24
PCAP_RECORD_HEADER_LENGTH = 16
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB = 1
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PCAPNG_OPT_END = 0
PCAPNG_OPT_TSRESOL = 9
PCAPNG_OPT_TSOFFSET = 14
MAX_RECORD_BYTES = 0x40000  # libpcap's largest snapshot length
RESYNC_WINDOW_NS = 3600 * NS_PER_S  # after a bad record header, the next record is looked for this close in time
MAX_BLOCK_BYTES = 1 << 24
MAX_INTERFACES = 64

# --- link and network layers ---------------------------------------------------------------------
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = (LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL2)
ETHERNET_HEADER_LENGTH = 14
SLL_HEADER_LENGTH = 16
SLL2_HEADER_LENGTH = 20
VLAN_TAG_LENGTH = 4
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_VLAN_OLD = 0x9100
IPV4_MIN_HEADER = 20
IPV4_FRAGMENT_MASK = 0x3FFF  # more-fragments flag and fragment offset
IP_PROTO_UDP = 17
UDP_HEADER_LENGTH = 8

# --- scan results --------------------------------------------------------------------------------
NEED_MORE = 0  # stopped at an incomplete record: carry it into the next chunk
SCAN_FULL = 1  # payload arrays full: decode them and scan on
_FRAME_UDP = 0
_FRAME_OTHER = 1
_FRAME_FRAGMENT = 2
# a bad frame inside an intact record: the scan can go on after it
ERR_TRUNCATED_FRAME = -10
ERR_BAD_IPV4 = -11
ERR_BAD_UDP = -12
ERR_LINKTYPE = -13
ERR_INTERFACE = -14
ERR_CAPTURE_LENGTH = -15
ERR_RECORD_LENGTH = -16  # a record header whose lengths cannot be right: the records after it are looked for
# a broken container: nothing after it can be framed
ERR_BLOCK_LENGTH = -21
ERR_BYTE_ORDER_MAGIC = -22
ERR_TOO_MANY_INTERFACES = -23
ERR_TSRESOL = -24
FATAL_BELOW = -20  # codes at or below are fatal

SCAN_TEXT = {
    ERR_TRUNCATED_FRAME: "frame shorter than its link, IPv4 or UDP headers say",
    ERR_BAD_IPV4: "bad IPv4 header",
    ERR_BAD_UDP: "bad UDP length",
    ERR_LINKTYPE: "unsupported link type",
    ERR_INTERFACE: "packet names an interface the section did not describe",
    ERR_CAPTURE_LENGTH: "captured length runs past the end of its block",
    ERR_BLOCK_LENGTH: "bad pcapng block length",
    ERR_BYTE_ORDER_MAGIC: "bad pcapng byte-order magic",
    ERR_TOO_MANY_INTERFACES: f"more than {MAX_INTERFACES} pcapng interfaces",
    ERR_TSRESOL: "unsupported pcapng if_tsresol",
}

# scan counters (one int64 array that lives as long as the reader)
C_FRAMES = 0
C_OTHER = 1  # not IPv4/UDP
C_FRAGMENTS = 2
C_LAST_TS = 3  # capture timestamp (ns) of the last record framed
N_COUNTERS = 4

# pcapng section state and per-interface table
SEC_BIG_ENDIAN = 0
SEC_INTERFACES = 1
IF_LINKTYPE = 0
IF_TS_MUL = 1  # decimal resolution: ns = raw * mul // div
IF_TS_DIV = 2
IF_TS_SHIFT = 3  # binary resolution 2^-shift, -1 for decimal
IF_TS_OFFSET_NS = 4
IF_WORDS = 5

PAYLOAD_CAPACITY = 1 << 16  # payloads per scan call
OUT_ROWS = 1 << 17  # event rows per batch; above the 65534 messages a packet can hold

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


# --- numba scanners ------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _be16_nb(buf, pos):
    return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])


@njit(cache=True, nogil=True)
def _u16_nb(buf, pos, big):
    if big:
        return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
    return (np.int64(buf[pos + 1]) << 8) | np.int64(buf[pos])


@njit(cache=True, nogil=True)
def _u32_nb(buf, pos, big):
    value = np.int64(0)
    for i in range(4):
        value = (value << 8) | np.int64(buf[pos + i if big else pos + 3 - i])
    return value


@njit(cache=True, nogil=True)
def _udp_payload_nb(buf, pos, caplen, linktype):
    """``(kind, offset, length)`` of the UDP payload in the frame ``buf[pos:pos+caplen]``.

    ``kind`` is ``_FRAME_UDP``, ``_FRAME_OTHER``, ``_FRAME_FRAGMENT`` or an ``ERR_*`` code.
    """
    end = pos + caplen
    if linktype == LINKTYPE_ETHERNET:
        if caplen < ETHERNET_HEADER_LENGTH:
            return ERR_TRUNCATED_FRAME, 0, 0
        ethertype = _be16_nb(buf, pos + 12)
        ip = pos + ETHERNET_HEADER_LENGTH
    elif linktype == LINKTYPE_LINUX_SLL:
        if caplen < SLL_HEADER_LENGTH:
            return ERR_TRUNCATED_FRAME, 0, 0
        ethertype = _be16_nb(buf, pos + 14)
        ip = pos + SLL_HEADER_LENGTH
    elif linktype == LINKTYPE_LINUX_SLL2:
        if caplen < SLL2_HEADER_LENGTH:
            return ERR_TRUNCATED_FRAME, 0, 0
        ethertype = _be16_nb(buf, pos)
        ip = pos + SLL2_HEADER_LENGTH
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        if caplen < 1:
            return ERR_TRUNCATED_FRAME, 0, 0
        if buf[pos] >> 4 != 4:
            return _FRAME_OTHER, 0, 0
        ethertype = np.int64(ETHERTYPE_IPV4)
        ip = pos
    else:
        return ERR_LINKTYPE, 0, 0
    while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_VLAN_OLD):
        if ip + VLAN_TAG_LENGTH > end:
            return ERR_TRUNCATED_FRAME, 0, 0
        ethertype = _be16_nb(buf, ip + 2)
        ip += VLAN_TAG_LENGTH
    if ethertype != ETHERTYPE_IPV4:
        return _FRAME_OTHER, 0, 0
    if ip + IPV4_MIN_HEADER > end:
        return ERR_TRUNCATED_FRAME, 0, 0
    header_length = np.int64(buf[ip] & 0x0F) * 4
    total_length = _be16_nb(buf, ip + 2)
    if buf[ip] >> 4 != 4 or header_length < IPV4_MIN_HEADER or total_length < header_length:
        return ERR_BAD_IPV4, 0, 0
    if ip + total_length > end:
        return ERR_TRUNCATED_FRAME, 0, 0
    if _be16_nb(buf, ip + 6) & IPV4_FRAGMENT_MASK:
        return _FRAME_FRAGMENT, 0, 0
    if buf[ip + 9] != IP_PROTO_UDP:
        return _FRAME_OTHER, 0, 0
    udp = ip + header_length
    if total_length - header_length < UDP_HEADER_LENGTH:
        return ERR_TRUNCATED_FRAME, 0, 0
    udp_length = _be16_nb(buf, udp + 4)
    if udp_length < UDP_HEADER_LENGTH or udp_length > total_length - header_length:
        return ERR_BAD_UDP, 0, 0
    return _FRAME_UDP, udp + UDP_HEADER_LENGTH, udp_length - UDP_HEADER_LENGTH


@njit(cache=True, nogil=True)
def _take_frame_nb(buf, pos, caplen, linktype, ts_ns, n, offsets, lengths, stamps, frames, counters):
    """Classify one frame; a UDP payload is appended at ``n``. Returns ``(status, n)``."""
    kind, offset, length = _udp_payload_nb(buf, pos, caplen, linktype)
    if kind == _FRAME_UDP:
        offsets[n] = offset
        lengths[n] = length
        stamps[n] = ts_ns
        frames[n] = counters[C_FRAMES]
        return NEED_MORE, n + 1
    if kind == _FRAME_OTHER:
        counters[C_OTHER] += 1
    elif kind == _FRAME_FRAGMENT:
        counters[C_FRAGMENTS] += 1
    else:
        return kind, n
    return NEED_MORE, n


@njit(cache=True, nogil=True)
def _record_ts_nb(buf, pos, big, frac_ns):
    """Capture timestamp (ns since the epoch) of the classic pcap record header at buf[pos]."""
    return _u32_nb(buf, pos, big) * NS_PER_S + _u32_nb(buf, pos + 4, big) * frac_ns


@njit(cache=True, nogil=True)
def _lengths_fit_nb(buf, pos, big, limit):
    """Whether the record header at buf[pos] has lengths a capture can hold: captured <= ``limit`` (the
    snapshot length) and <= original."""
    caplen = _u32_nb(buf, pos + 8, big)
    return caplen <= limit and caplen <= _u32_nb(buf, pos + 12, big)


@njit(cache=True, nogil=True)
def _header_verdict_nb(buf, pos, end, big, frac_ns, limit, after_ns, at_eof):
    """Whether a right record header starts at buf[pos]: 1 (lengths that fit, a fraction below one second, a
    timestamp within RESYNC_WINDOW_NS of ``after_ns`` unless that is negative), 0 when not, -1 when buf ends
    first (never at the end of the file)."""
    if end - pos < PCAP_RECORD_HEADER_LENGTH:
        return 0 if at_eof else -1
    fraction_ns = _u32_nb(buf, pos + 4, big) * frac_ns
    ts_ns = _record_ts_nb(buf, pos, big, frac_ns)
    near = after_ns < 0 or abs(ts_ns - after_ns) <= RESYNC_WINDOW_NS
    return 1 if near and fraction_ns < NS_PER_S and _lengths_fit_nb(buf, pos, big, limit) else 0


@njit(cache=True, nogil=True)
def resync_pcap_nb(buf, pos, end, big, frac_ns, limit, after_ns, at_eof):
    """Where classic pcap records go on after a bad record header: the first offset from ``pos`` where a right
    record header starts (see :func:`_header_verdict_nb`) and the record it frames is followed by another right
    header or by the end of the file. Returns ``(1, offset)`` when found; ``(0, offset)`` when buf ends before
    the record at ``offset`` can be judged (call again from there with more bytes); ``(0, end)`` when none.
    """
    for p in range(pos, end):
        verdict = _header_verdict_nb(buf, p, end, big, frac_ns, limit, after_ns, at_eof)
        if verdict == 0:
            continue
        if verdict < 0:
            return 0, p
        following = p + PCAP_RECORD_HEADER_LENGTH + _u32_nb(buf, p + 8, big)
        if following >= end:
            if not at_eof:
                return 0, p
            if following == end:
                return 1, p
            continue
        ts_ns = _record_ts_nb(buf, p, big, frac_ns)
        verdict = _header_verdict_nb(buf, following, end, big, frac_ns, limit, ts_ns, at_eof)
        if verdict != 0:
            return max(verdict, 0), p
    return 0, end


@njit(cache=True, nogil=True)
def scan_pcap_nb(buf, pos, end, big, frac_ns, limit, linktype, offsets, lengths, stamps, frames, counters):
    """Scan classic pcap records in ``buf[pos:end]`` for UDP payloads.

    Returns ``(status, n, pos, record)``: ``n`` payloads written, ``pos`` where to resume (past a
    bad frame; at the record for a bad record header or a fatal error) and ``record`` the position of
    the last record examined (the bad one on an error). ``frac_ns`` is 1000 for microsecond files, 1
    for nanosecond; a record may capture at most ``limit`` bytes (the file's snapshot length).
    """
    n = 0
    while True:
        if n == offsets.shape[0]:
            return SCAN_FULL, n, pos, pos
        if end - pos < PCAP_RECORD_HEADER_LENGTH:
            return NEED_MORE, n, pos, pos
        if not _lengths_fit_nb(buf, pos, big, limit):
            return ERR_RECORD_LENGTH, n, pos, pos
        caplen = _u32_nb(buf, pos + 8, big)
        if end - pos - PCAP_RECORD_HEADER_LENGTH < caplen:
            return NEED_MORE, n, pos, pos
        record = pos
        pos += PCAP_RECORD_HEADER_LENGTH + caplen
        counters[C_FRAMES] += 1
        ts_ns = _record_ts_nb(buf, record, big, frac_ns)
        counters[C_LAST_TS] = ts_ns
        status, n = _take_frame_nb(
            buf,
            record + PCAP_RECORD_HEADER_LENGTH,
            caplen,
            linktype,
            ts_ns,
            n,
            offsets,
            lengths,
            stamps,
            frames,
            counters,
        )
        if status != NEED_MORE:
            return status, n, pos, record


@njit(cache=True, nogil=True)
def _pcapng_ts_nb(interface, high, low):
    """Nanoseconds of an EPB timestamp in the interface's resolution."""
    raw = (np.uint64(high) << np.uint64(32)) | np.uint64(low)
    shift = interface[IF_TS_SHIFT]
    if shift < 0:
        ns = raw * np.uint64(interface[IF_TS_MUL]) // np.uint64(interface[IF_TS_DIV])
    else:
        seconds = raw >> np.uint64(shift)
        fraction = raw & ((np.uint64(1) << np.uint64(shift)) - np.uint64(1))
        if shift > 32:  # keep fraction * 1e9 inside 64 bits
            fraction >>= np.uint64(shift - 32)
            shift = 32
        ns = seconds * np.uint64(NS_PER_S) + ((fraction * np.uint64(NS_PER_S)) >> np.uint64(shift))
    return np.int64(ns) + interface[IF_TS_OFFSET_NS]


@njit(cache=True, nogil=True)
def _pow10_nb(exponent):
    value = np.int64(1)
    for _ in range(exponent):
        value *= 10
    return value


@njit(cache=True, nogil=True)
def _read_idb_nb(buf, block, body_end, big, interface):
    """Fill one interface row from an IDB; returns 0 or an ``ERR_*`` code."""
    interface[IF_LINKTYPE] = _u16_nb(buf, block + 8, big)
    interface[IF_TS_MUL] = 1000  # default resolution: microseconds
    interface[IF_TS_DIV] = 1
    interface[IF_TS_SHIFT] = -1
    interface[IF_TS_OFFSET_NS] = 0
    pos = block + 16
    while pos + 4 <= body_end:
        code = _u16_nb(buf, pos, big)
        length = _u16_nb(buf, pos + 2, big)
        value = pos + 4
        if code == PCAPNG_OPT_END:
            break
        if value + length > body_end:
            return ERR_BLOCK_LENGTH
        if code == PCAPNG_OPT_TSRESOL and length >= 1:
            resolution = np.int64(buf[value])
            if resolution & 0x80:
                if resolution & 0x7F > 63:
                    return ERR_TSRESOL
                interface[IF_TS_SHIFT] = resolution & 0x7F
            elif resolution <= 9:
                interface[IF_TS_MUL] = _pow10_nb(9 - resolution)
            elif resolution <= 18:
                interface[IF_TS_MUL] = 1
                interface[IF_TS_DIV] = _pow10_nb(resolution - 9)
            else:
                return ERR_TSRESOL
        elif code == PCAPNG_OPT_TSOFFSET and length == 8:
            high = _u32_nb(buf, value if big else value + 4, big)
            low = _u32_nb(buf, value + 4 if big else value, big)
            interface[IF_TS_OFFSET_NS] = ((high << 32) | low) * NS_PER_S
        pos = value + ((length + 3) & ~3)
    return 0


@njit(cache=True, nogil=True)
def scan_pcapng_nb(buf, pos, end, section, interfaces, offsets, lengths, stamps, frames, counters):
    """Scan pcapng blocks in ``buf[pos:end]`` for UDP payloads; results as :func:`scan_pcap_nb`.

    ``section`` (byte order, interface count) and ``interfaces`` (one row per IDB of the current
    section) carry the section state across chunks. An SPB frame gets timestamp 0.
    """
    n = 0
    while True:
        if n == offsets.shape[0]:
            return SCAN_FULL, n, pos, pos
        if end - pos < 12:
            return NEED_MORE, n, pos, pos
        block = pos
        big = section[SEC_BIG_ENDIAN]
        block_type = _u32_nb(buf, block, big)
        if block_type == PCAPNG_SHB:
            magic = _u32_nb(buf, block + 8, False)
            if magic == PCAPNG_BYTE_ORDER_MAGIC:
                big = 0
            elif _u32_nb(buf, block + 8, True) == PCAPNG_BYTE_ORDER_MAGIC:
                big = 1
            else:
                return ERR_BYTE_ORDER_MAGIC, n, block, block
        total = _u32_nb(buf, block + 4, big)
        if total < 12 or total % 4 != 0 or total > MAX_BLOCK_BYTES:
            return ERR_BLOCK_LENGTH, n, block, block
        if end - block < total:
            return NEED_MORE, n, block, block
        if _u32_nb(buf, block + total - 4, big) != total:
            return ERR_BLOCK_LENGTH, n, block, block
        body_end = block + total - 4
        if block_type == PCAPNG_SHB:
            section[SEC_BIG_ENDIAN] = big
            section[SEC_INTERFACES] = 0
        elif block_type == PCAPNG_IDB:
            if total < 20:
                return ERR_BLOCK_LENGTH, n, block, block
            if section[SEC_INTERFACES] == MAX_INTERFACES:
                return ERR_TOO_MANY_INTERFACES, n, block, block
            status = _read_idb_nb(buf, block, body_end, big, interfaces[section[SEC_INTERFACES]])
            if status != 0:
                return status, n, block, block
            section[SEC_INTERFACES] += 1
        elif block_type in (PCAPNG_EPB, PCAPNG_SPB):
            if total < (32 if block_type == PCAPNG_EPB else 16):
                return ERR_BLOCK_LENGTH, n, block, block
            pos = block + total
            counters[C_FRAMES] += 1
            if block_type == PCAPNG_EPB:
                interface_id = _u32_nb(buf, block + 8, big)
                caplen = _u32_nb(buf, block + 20, big)
                data = block + 28
            else:
                interface_id = np.int64(0)
                caplen = min(_u32_nb(buf, block + 8, big), total - 16)
                data = block + 12
            if interface_id >= section[SEC_INTERFACES]:
                return ERR_INTERFACE, n, pos, block
            if data + caplen > body_end:
                return ERR_CAPTURE_LENGTH, n, pos, block
            interface = interfaces[interface_id]
            ts_ns = np.int64(0)
            if block_type == PCAPNG_EPB:
                ts_ns = _pcapng_ts_nb(interface, _u32_nb(buf, block + 12, big), _u32_nb(buf, block + 16, big))
            status, n = _take_frame_nb(
                buf, data, caplen, interface[IF_LINKTYPE], ts_ns, n, offsets, lengths, stamps, frames, counters
            )
            if status != NEED_MORE:
                return status, n, pos, block
            continue
        pos = block + total


# --- reader --------------------------------------------------------------------------------------
class PcapReader(FeedReader):
    """MoldUDP64 / ITCH 5.0 events from a pcap or pcapng capture (plain or gzip), in chunks.

    ``ts_local_ns`` of every event is the capture timestamp (ns since the epoch); ``ts_exch_ns`` is
    ITCH's ns since midnight. Sequence gaps, duplicates and packets go to ``stats``; per-session
    detail is in ``tracker``; frames that are not IPv4/UDP and IPv4 fragments are counted in
    ``other_frames`` and ``fragments``.
    """

    def __init__(
        self, path: str, *, skip_bad: bool = False, stats: FeedStats | None = None, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        super().__init__(path, skip_bad=skip_bad, stats=stats)
        self.chunk_bytes = chunk_bytes
        self.tracker = mold.SequenceTracker()
        self.stocks = StockDirectory()
        self.instruments = self.stocks.instruments
        self._counters = np.zeros(N_COUNTERS, np.int64)
        self._offsets = np.zeros(PAYLOAD_CAPACITY, np.int64)
        self._lengths = np.zeros(PAYLOAD_CAPACITY, np.int64)
        self._stamps = np.zeros(PAYLOAD_CAPACITY, np.int64)
        self._frames = np.zeros(PAYLOAD_CAPACITY, np.int64)
        self._section = np.zeros(2, np.int64)
        self._interfaces = np.zeros((MAX_INTERFACES, IF_WORDS), np.int64)
        self._duplicates_reported = 0
        self._skipping: tuple[FeedError, int] | None = None  # a skip under way: its reason, where it began
        self._resync = _nothing_resumes  # where records go on after a bad one (set by the file header)
        self._order = "<"
        self._limit = MAX_RECORD_BYTES

    @property
    def directory(self) -> np.ndarray:
        """The stock directory table as the session has announced it so far."""
        return self.stocks.table

    def continue_from(self, previous: FeedReader) -> None:
        """Go on with the stock directory of the previous ITCH file of the same session.

        Sequence tracking starts afresh in every capture file: captures given together are often
        samples from different moments, and carrying the expectation over would drop their packets
        as duplicates.
        """
        stocks = getattr(previous, "stocks", None)
        if isinstance(stocks, StockDirectory):
            self.stocks = stocks
            self.instruments = stocks.instruments

    @property
    def frames(self) -> int:
        """Capture records (packets) read."""
        return int(self._counters[C_FRAMES])

    @property
    def other_frames(self) -> int:
        """Frames that were not IPv4/UDP, ignored."""
        return int(self._counters[C_OTHER])

    @property
    def fragments(self) -> int:
        """IPv4 fragments, skipped."""
        return int(self._counters[C_FRAGMENTS])

    def batches(self) -> Iterator[np.ndarray]:
        """Yield event arrays (valid until the next iteration) until the capture ends."""
        out = empty_events(OUT_ROWS)
        n = 0
        for buf, base, count in self._payload_segments():
            first = 0
            while first < count:
                status, index, n, seq = mold.decode_packets_nb(
                    buf, self._offsets, self._lengths, self._stamps, first, count, out, n,
                    self.stats.type_counts, self.stocks.table, self.tracker.state,
                )  # fmt: skip
                self.stats.packets += index - first
                self._report_sequences()
                first = index
                if status == mold.FULL:
                    if n:
                        yield out[:n]
                        n = 0
                elif status != mold.OK:
                    self._bad_payload(status, buf, base, index, seq)
                    first = index + 1
            self.stocks.announce()
            if n:
                yield out[:n]
                n = 0

    def udp_payloads(self) -> Iterator[tuple[int, bytes]]:
        """``(capture ts_ns, UDP payload)`` of every IPv4/UDP frame, without decoding them."""
        for buf, _, count in self._payload_segments():
            for i in range(count):
                start = int(self._offsets[i])
                yield int(self._stamps[i]), buf[start : start + int(self._lengths[i])].tobytes()

    # --- container -------------------------------------------------------------------------------
    def _payload_segments(self) -> Iterator[tuple[np.ndarray, int, int]]:
        """Yield ``(buffer, stream offset of buffer[0], payloads)`` after every scan call.

        The payload arrays describe ``buffer`` until the next iteration. Partial records are carried
        into the next chunk, so memory stays at a chunk plus one record (two while looking for where
        records go on after a bad record header).
        """
        buf = np.zeros(0, np.uint8)
        pos = end = base = 0
        scan = None
        for offset, data, raw_position in read_chunks(self.path, self.chunk_bytes):
            self.bytes_done = raw_position
            buf, pos, end, base = _refill(buf, pos, end, data, offset)
            if scan is None:
                scan, pos = self._open(buf, end)
                if scan is None:
                    continue
            pos = yield from self._scan(scan, buf, pos, end, base, at_eof=False)
        if scan is None:
            self._open(buf, end, at_eof=True)
            return
        yield from self._scan(scan, buf, pos, end, base, at_eof=True)

    def _scan(
        self, scan, buf: np.ndarray, pos: int, end: int, base: int, at_eof: bool
    ) -> Generator[tuple[np.ndarray, int, int], None, int]:
        """Scan ``buf[pos:end]``, yielding payloads; returns where the bytes still to scan begin.

        A bad frame is skipped alone. After a bad record header (or a record running past the end of the
        file) the skip goes on to where right records start again (:func:`resync_pcap_nb`); after a broken
        pcapng block, to the end of the file. Without ``skip_bad`` the first of them is raised.
        """
        while True:
            if self._skipping is not None:
                found, pos = self._resync(buf, pos, end, at_eof)
                if not found and not at_eof:
                    return pos  # the skip goes on in the next chunk, from the first record it cannot judge yet
                error, start = self._skipping
                stop = base + (pos if found else end)
                self._skipping = None
                self.stats.record_skip(error, 1, stop - start)
                if not found:
                    return end
            status, count, pos, record = scan(buf, pos, end)
            if count:
                yield buf, base, count
            if status == SCAN_FULL:
                continue
            if status == NEED_MORE and (not at_eof or pos == end):
                return pos
            bad_frame = FATAL_BELOW < status < NEED_MORE and status != ERR_RECORD_LENGTH  # in a record that frames
            packet = self.frames if bad_frame else self.frames + 1
            error = FeedError(self._what(status, buf, record), path=self.path, offset=base + record, packet=packet)
            if not self.skip_bad:
                raise error
            if bad_frame:
                self.stats.record_skip(error, 1, pos - record)
                continue
            self._skipping = (error, base + record)
            if status <= FATAL_BELOW:  # a broken pcapng block: nothing after it can be framed
                self._resync = _nothing_resumes
            else:  # a record header that cannot be right, or the file ends inside the record
                pos = record + 1

    def _what(self, status: int, buf: np.ndarray, record: int) -> str:
        """What is wrong with the record at buf[record] that the scan stopped at with ``status``."""
        if status == NEED_MORE:
            return "truncated record at the end of the capture"
        if status != ERR_RECORD_LENGTH:
            return SCAN_TEXT[status]
        caplen, origlen = struct.unpack_from(self._order + "II", buf, record + 8)
        return f"impossible record length: captured {caplen}, original {origlen}, snapshot length {self._limit}"

    def _open(self, buf: np.ndarray, end: int, at_eof: bool = False):
        """Parse the file header; returns ``(scan function, first record position)``.

        ``(None, 0)`` while too few bytes have arrived; at the end of the file that is an error.
        """
        head = buf[: min(end, PCAP_HEADER_LENGTH)].tobytes()
        if len(head) >= 4 and head[:4] == _PCAPNG_MAGIC:
            return self._scan_pcapng, 0
        if len(head) >= 4 and head[:4] not in _PCAP_MAGICS:
            raise FeedError(f"not a pcap or pcapng file (magic {head[:4].hex()})", path=self.path, offset=0)
        if len(head) < PCAP_HEADER_LENGTH:
            if at_eof:
                raise FeedError("capture shorter than its file header", path=self.path, offset=0)
            return None, 0
        order, frac_ns = _PCAP_MAGICS[head[:4]]
        snaplen, linktype = struct.unpack_from(order + "II", head, 16)
        linktype &= 0xFFFF
        if linktype not in SUPPORTED_LINKTYPES:
            raise FeedError(f"unsupported link type {linktype}", path=self.path, offset=20)
        big = order == ">"
        self._order = order
        self._limit = limit = snaplen if 0 < snaplen <= MAX_RECORD_BYTES else MAX_RECORD_BYTES

        def scan(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int]:
            return scan_pcap_nb(
                buf,
                pos,
                end,
                big,
                frac_ns,
                limit,
                linktype,
                self._offsets,
                self._lengths,
                self._stamps,
                self._frames,
                self._counters,
            )

        def resync(buf: np.ndarray, pos: int, end: int, at_eof: bool) -> tuple[int, int]:
            after_ns = int(self._counters[C_LAST_TS]) if self.frames else -1
            return resync_pcap_nb(buf, pos, end, big, frac_ns, limit, after_ns, at_eof)

        self._resync = resync
        return scan, PCAP_HEADER_LENGTH

    def _scan_pcapng(self, buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int]:
        return scan_pcapng_nb(
            buf,
            pos,
            end,
            self._section,
            self._interfaces,
            self._offsets,
            self._lengths,
            self._stamps,
            self._frames,
            self._counters,
        )

    # --- MoldUDP64 -------------------------------------------------------------------------------
    def _bad_payload(self, status: int, buf: np.ndarray, base: int, index: int, seq: int) -> None:
        """Raise, or count under ``skip_bad``, a payload the MoldUDP64 decoder rejected."""
        start = int(self._offsets[index])
        length = int(self._lengths[index])
        what = mold.STATUS_TEXT[status]
        if status == mold.ERR_MESSAGE:
            for message_seq, message in mold.iter_messages(buf[start : start + length].tobytes()):
                if message_seq == seq:
                    try:
                        decode_message(message)
                    except FeedError as reason:
                        what = f"{what}: {reason.what}"
        error = FeedError(
            what, path=self.path, offset=base + start, packet=int(self._frames[index]), seq=seq if seq >= 0 else None
        )
        if not self.skip_bad:
            raise error
        self.stats.record_skip(error, 1, length)

    def _report_sequences(self) -> None:
        """Move new gaps and duplicates from the tracker into ``stats``."""
        if self.tracker.state[mold.T_GAP_ENTRIES]:
            for _, first_missing, missing in self.tracker.drain_gaps():
                self.stats.record_gap(first_missing, missing)
        duplicates = self.tracker.duplicate_packets
        self.stats.duplicate_packets += duplicates - self._duplicates_reported
        self._duplicates_reported = duplicates


def _nothing_resumes(buf: np.ndarray, pos: int, end: int, at_eof: bool) -> tuple[int, int]:
    """The resync of a broken pcapng container: nothing after it can be framed, so the skip runs to the end."""
    return 0, end


def _refill(buf: np.ndarray, pos: int, end: int, data: bytes, offset: int) -> tuple[np.ndarray, int, int, int]:
    """Append ``data`` after the unscanned tail ``buf[pos:end]``; returns ``(buf, 0, end, base)``."""
    keep = end - pos
    need = keep + len(data)
    if need > buf.shape[0]:
        grown = np.empty(max(need, 2 * buf.shape[0]), np.uint8)
        grown[:keep] = buf[pos:end]
        buf = grown
    elif keep:
        buf[:keep] = buf[pos:end].copy()
    buf[keep:need] = np.frombuffer(data, np.uint8)
    return buf, 0, need, offset - keep


def iter_udp_payloads(path: str) -> Iterator[tuple[int, bytes]]:
    """``(capture ts_ns, UDP payload)`` of every IPv4/UDP frame of a capture (tests, tools)."""
    yield from PcapReader(path).udp_payloads()
