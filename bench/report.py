"""Tables for the terminal and for BENCHMARKS.md, and the facts about the machine they came from."""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str = "-"
    passed: bool | None = None  # None: reported, no target

    @property
    def result(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]


@dataclass(frozen=True)
class Table:
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


def summary_table(rows: Sequence[Row]) -> Table:
    return Table(
        "Summary",
        ("figure", "value", "target", "result"),
        [(row.figure, row.value, row.target, row.result) for row in rows],
    )


def text(table: Table) -> str:
    widths = [
        max(len(str(cell)) for cell in column)
        for column in zip(table.header, *table.rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)
        ).rstrip()

    out = [table.title, line(table.header), line(["-" * width for width in widths])]
    out += [line(row) for row in table.rows]
    return "\n".join(out)


def markdown(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    out = [f"### {table.title}", "", line(table.header), line(["---"] * len(table.header))]
    out += [line(row) for row in table.rows]
    return "\n".join(out)


def machine() -> list[tuple[str, str]]:
    return [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", _cpu_model()),
        ("memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", sys.version.split()[0]),
        ("uvicorn / slack-bolt / slack-sdk", _versions("uvicorn", "slack-bolt", "slack-sdk")),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _versions(*packages: str) -> str:
    return " / ".join(version(package) for package in packages)


# Other benchmarks (bench/roles.py) write sections of their own into BENCHMARKS.md between these
# markers; a run that rewrites the file keeps them.
_SECTION = re.compile(r"<!-- (?P<name>[\w.]+) -->\n.*?<!-- /(?P=name) -->\n", re.DOTALL)


def with_section(document: str, name: str, body: str) -> str:
    """`document` with its section `name` replaced by `body`, or `body` appended."""
    block = f"<!-- {name} -->\n{body.rstrip()}\n<!-- /{name} -->\n"
    for match in _SECTION.finditer(document):
        if match["name"] == name:
            return document[: match.start()] + block + document[match.end() :]
    return document.rstrip("\n") + "\n\n" + block


def keep_sections(old: str, new: str) -> str:
    """`new`, with the marked sections of `old` that it lacks."""
    for match in _SECTION.finditer(old):
        if f"<!-- {match['name']} -->" not in new:
            new = new.rstrip("\n") + "\n\n" + match.group(0)
    return new
