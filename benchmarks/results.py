"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others alone."""

import platform
import re
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEach section is written by the script it names, with the exact "
          "command. Machines are shared and noisy: figures are medians of repeated runs and, "
          "where it matters, ratios to a baseline measured side by side in the same run.\n")


def machine() -> str:
    """One line describing where the figures were measured."""
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or add) the section `name` with the command that produced it and `body`."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = (f"<!-- begin {name} -->\n## {name}\n\n`{command}`  \n{machine()}\n\n"
               f"{body.strip()}\n<!-- end {name} -->\n")
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->\n",
                         re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + section)
    RESULTS.write_text(text)


def command_line() -> str:
    """The command that is running, as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    root = RESULTS.parent.parent
    if script.suffix == ".py" and script.is_relative_to(root):
        # `python -m benchmarks.x` puts the file's absolute path in argv[0]: write the module.
        module = ".".join(script.relative_to(root).with_suffix("").parts)
        return " ".join([".venv/bin/python", "-m", module, *sys.argv[1:]])
    return " ".join([".venv/bin/python", *sys.argv])
