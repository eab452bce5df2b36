"""Fixed-layout binary messages as numpy records, off the hot path: fill one from named fields, read one back.

Every wire protocol here (ITCH, OUCH) describes a message as a big-endian numpy dtype; these two
functions are the Python-side encode and decode shared by their codecs, tools and tests.
"""

from __future__ import annotations

import numpy as np


def fill_record(
    dtype: np.dtype, msg_type: str, fields: dict[str, int | str], reserved: tuple[str, ...] = ()
) -> np.ndarray:
    """A record of ``dtype`` with ``message_type`` set and ``fields`` written by name.

    Alpha (``S``) fields take a str padded with spaces (as the protocols do); fields left out are 0
    or spaces. An unknown or ``reserved`` field name, a too-long string or an integer that does not
    fit its unsigned field raises ValueError naming the field.
    """
    record = np.zeros((), dtype)
    for name in dtype.names:
        if dtype[name].kind == "S":
            record[name] = b" " * dtype[name].itemsize
    record["message_type"] = msg_type.encode("ascii")
    for name, value in fields.items():
        if name not in dtype.names or name == "message_type" or name in reserved:
            raise ValueError(f"message {msg_type!r} has no field {name!r}")
        field = dtype[name]
        if field.kind == "S":
            raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if len(raw) > field.itemsize:
                raise ValueError(f"{name}={value!r} is longer than {field.itemsize} characters")
            record[name] = raw.ljust(field.itemsize, b" ")
        else:
            number = int(value)
            if not 0 <= number < 1 << (8 * field.itemsize):
                raise ValueError(f"{name}={number} does not fit in {field.itemsize} unsigned bytes")
            record[name] = number
    return record


def read_record(record: np.void, skip: tuple[str, ...] = ()) -> dict[str, int | str]:
    """The fields of a record by name (except ``skip``): ints, and alpha fields without their space padding."""
    fields: dict[str, int | str] = {}
    for name in record.dtype.names:
        if name in skip:
            continue
        if record.dtype[name].kind == "S":
            fields[name] = bytes(record[name]).decode("latin-1").rstrip(" ")
        else:
            fields[name] = int(record[name])
    return fields
