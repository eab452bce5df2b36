"""Configuration: frozen msgspec structs decoded from TOML, unknown keys rejected.

Every config of the project derives from :class:`FrozenConfig` (frozen, unknown fields rejected) and
gives each key a default, documented beside the field and in the example file. Validation beyond
types lives in the struct's ``__post_init__`` (raise ``ValueError``); a NaN or infinite float anywhere
is refused; :func:`load_toml` turns every failure into one :class:`ConfigError` line naming the file
and the place.

>>> config = load_toml("examples/sim-exchange.toml", SimExchangeConfig)
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec


class FrozenConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The base of every config struct: immutable, and a key it does not know is an error, not a silent no-op.

    (Subclasses that want keyword-only construction add ``kw_only=True``: msgspec does not inherit it.)
    """


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not describe a valid config (one line)."""


def load_toml[T](path: str | Path, config_type: type[T]) -> T:
    """Read ``path`` as TOML into ``config_type``; raises :class:`ConfigError` with a one-line reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    return decode_toml(data, config_type, source=str(path))


def decode_toml[T](data: bytes | str, config_type: type[T], source: str = "<config>") -> T:
    """Decode TOML text into ``config_type``; raises :class:`ConfigError` naming ``source``."""
    try:
        config = msgspec.toml.decode(data, type=config_type)
    except msgspec.MsgspecError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{source}: {reason}") from exc
    where = _non_finite(config, "")
    if where:
        raise ConfigError(f"{source}: {where} is not a finite number")
    return config


def _non_finite(value: object, path: str) -> str:
    """``key = value`` of the first NaN or infinite float in a decoded config, "" when there is none."""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"{path} = {value}"
    if isinstance(value, msgspec.Struct):
        items = ((name, getattr(value, name)) for name in value.__struct_fields__)
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (tuple, list)):
        items = ((f"[{k}]", v) for k, v in enumerate(value))
    else:
        return ""
    for key, item in items:
        found = _non_finite(item, f"{path}{key}" if str(key).startswith("[") or not path else f"{path}.{key}")
        if found:
            return found
    return ""
