"""Small helpers for validating TOML config: every error names file, key and expectation."""

import tomllib
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that is wrong; the message is one line naming file and key."""

    def __init__(self, file: str | Path, key: str, expected: str, got: object = None) -> None:
        got_txt = "" if got is None else f", got {got!r}"
        super().__init__(f"{file}: {key}: expected {expected}{got_txt}")
        self.file, self.key, self.expected = str(file), key, expected


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax errors into ConfigError."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(p, "(file)", "an existing TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(p, "(syntax)", f"valid TOML ({e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(p, "(syntax)", f"UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        # tomllib parses nested arrays/tables by recursion; refuse, don't crash.
        raise ConfigError(p, "(syntax)", "valid TOML (nested too deeply)") from None
    except OSError as e:
        raise ConfigError(p, "(file)", f"a readable file ({e.strerror})") from None


class Section:
    """A table being read: typed getters, and `done()` refuses keys nobody asked for."""

    def __init__(self, file: str | Path, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, path or "(top)", "a table", data)
        self.file, self.path, self.data = file, path, data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        """Full dotted path of a key in this section."""
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.file, self.key(name), "a value (key is required)")
            return default
        return self.data[name]

    def text(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = (),
            check: Any = None) -> str:
        """A string; `choices` limits it, `check(value)` may raise ValueError."""
        v = self._get(name, default, default is None)
        if not isinstance(v, str):
            raise ConfigError(self.file, self.key(name), "a string", v)
        if choices and v not in choices:
            raise ConfigError(self.file, self.key(name), f"one of {', '.join(choices)}", v)
        if check is not None:
            try:
                check(v)
            except ValueError as e:
                raise ConfigError(self.file, self.key(name), str(e)) from None
        return v

    def integer(self, name: str, default: int | None = None, *, lo: int | None = None,
            hi: int | None = None) -> int:
        """An integer within [lo, hi]."""
        v = self._get(name, default, default is None)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(self.file, self.key(name), "an integer", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.file, self.key(name),
                              f"an integer in [{lo if lo is not None else '-inf'}, "
                              f"{hi if hi is not None else 'inf'}]", v)
        return v

    def number(self, name: str, default: float | None = None, *, lo: float | None = None,
              hi: float | None = None) -> float:
        """A number within [lo, hi]."""
        v = self._get(name, default, default is None)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(self.file, self.key(name), "a number", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.file, self.key(name), f"a number in [{lo}, {hi}]", v)
        return float(v)

    def flag(self, name: str, default: bool | None = None) -> bool:
        """A boolean."""
        v = self._get(name, default, default is None)
        if not isinstance(v, bool):
            raise ConfigError(self.file, self.key(name), "true or false", v)
        return v

    def array(self, name: str, default: list[Any] | None = None) -> list[Any]:
        """A list (items checked by the caller)."""
        v = self._get(name, default, default is None)
        if not isinstance(v, list):
            raise ConfigError(self.file, self.key(name), "an array", v)
        return v

    def section(self, name: str, *, required: bool = False) -> "Section":
        """A nested table (empty when absent and not required)."""
        v = self._get(name, {}, required)
        return Section(self.file, self.key(name), v)

    def sections(self, name: str, *, required: bool = False) -> list["Section"]:
        """An array of tables."""
        v = self._get(name, [], required)
        if not isinstance(v, list):
            raise ConfigError(self.file, self.key(name), "an array of tables", v)
        return [Section(self.file, f"{self.key(name)}[{i}]", item) for i, item in enumerate(v)]

    def done(self) -> None:
        """Refuse any key that was not read."""
        for k in self.data:
            if k not in self.seen:
                raise ConfigError(self.file, self.key(k), "no such key (unknown keys are refused)")

    def fail(self, name: str, expected: str, got: object = None) -> ConfigError:
        """Build an error for a key of this section (to raise)."""
        return ConfigError(self.file, self.key(name), expected, got)
