"""Configuration: frozen msgspec structs decoded from TOML, unknown keys rejected.

Every config of the project derives from :class:`FrozenConfig` (frozen, unknown fields rejected) and
gives each key a default, documented beside the field and in the example file. Validation beyond
types lives in the struct's ``__post_init__`` (raise ``ValueError``); :func:`load_toml` turns every
failure into one :class:`ConfigError` line naming the file and the place.

>>> config = load_toml("examples/sim-exchange.toml", SimExchangeConfig)
"""

from __future__ import annotations

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
        return msgspec.toml.decode(data, type=config_type)
    except msgspec.MsgspecError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{source}: {reason}") from exc
