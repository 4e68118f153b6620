"""Per-node HMAC keys: a TOML file `[nodes]` of `node-id = "hex key"`."""

from pathlib import Path

from .config import ConfigError, Section, read_toml
from .ids import IdError, check_id

MIN_KEY_BYTES = 16


def parse_key(file: str | Path, key_path: str, value: object) -> bytes:
    """Decode one hex key, naming its place on error."""
    if not isinstance(value, str):
        raise ConfigError(file, key_path, "a hex string", value)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(file, key_path, "hex digits only") from None
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(file, key_path, f"a key of at least {MIN_KEY_BYTES} bytes")
    return raw


def load_keys(path: str | Path, section: str = "nodes", what: str = "node id"
              ) -> dict[str, bytes]:
    """Load a key table (`[nodes]` by default: id = "hex key"); unknown sections are refused."""
    top = Section(path, "", read_toml(path))
    table = top.section(section, required=True)
    top.done()
    keys: dict[str, bytes] = {}
    for ident, value in table.data.items():
        try:
            check_id(ident, what)
        except IdError as e:
            raise ConfigError(path, table.key(ident), str(e)) from None
        keys[ident] = parse_key(path, table.key(ident), value)
    return keys


def dump_keys(keys: dict[str, bytes]) -> str:
    """Render a key table as TOML text."""
    lines = ["# Node HMAC keys: secret. Readable by the supervisor only.", "[nodes]"]
    lines += [f'{node} = "{key.hex()}"' for node, key in sorted(keys.items())]
    return "\n".join(lines) + "\n"
