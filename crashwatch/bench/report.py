"""The benchmark table, its timing helper, the machine it ran on, and docs/benchmarks.md's measured part."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crashwatch.monitor.engines.local import cpu_flags, cpu_model

log = logging.getLogger(__name__)


@dataclass
class Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measure, figure, note)

    def add(self, measure: str, figure: str, note: str = "") -> None:
        log.info("%s: %s %s", measure, figure, note)
        self.rows.append((measure, figure, note))

    def markdown(self) -> str:
        lines = ["| measure | figure | note |", "| --- | --- | --- |"]
        lines += [f"| {m} | {f} | {n} |" for m, f, n in self.rows]
        return "\n".join(lines)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    flags = cpu_flags()
    extensions = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    simd = sorted({f for f in extensions if f in flags})
    model = cpu_model()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, {' '.join(simd)}; Python {platform.python_version()}"


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_report(out: Path, measured: str) -> None:
    """Put the measured part between the markers of ``out``, keeping the analysis written around it; a new
    file gets a title and the markers."""
    text = out.read_text(encoding="utf-8") if out.is_file() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = "# Benchmarks\n\n", "\n"
    out.write_text(f"{head}{BEGIN}\n{measured}{END}{tail}", encoding="utf-8")
