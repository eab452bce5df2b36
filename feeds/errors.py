"""The one error type of the feed handlers: what went wrong and exactly where."""

from __future__ import annotations


class FeedError(Exception):
    """Bad input in a feed file or packet.

    The message is one line naming the file, the byte offset and, when known, the packet number and
    the sequence number, so that the user can find the bad bytes with a hex dump.
    """

    def __init__(
        self, what: str, *, path: str = "", offset: int | None = None, packet: int | None = None, seq: int | None = None
    ) -> None:
        self.what = what
        self.path = path
        self.offset = offset
        self.packet = packet
        self.seq = seq
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path] if self.path else []
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.packet is not None:
            where.append(f"packet {self.packet}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return f"{': '.join(where)}: {self.what}" if where else self.what
