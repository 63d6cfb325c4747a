"""Shared benchmark plumbing: every measurement is recorded with its group and role, and the run ends
with the ratios that the speed targets are stated in (candidate vs baseline measured in the same run).

    pytest benchmarks/                      measure, print the ratio table; a missed target fails the run
    pytest benchmarks/ --save-results       also write benchmarks/results/<device>-<date>.json
    pytest benchmarks/ --report-only        print missed targets without failing (e.g. on a busy machine)

A target is checked only when its baseline was measured in the same run: selecting a candidate without its
baseline (-k) reports the target as unchecked, and --benchmark-disable measures nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sys

import pytest
import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The numpy MATLAB imresize port lives with the tests (their independent reference); the benchmarks
# use it as the peer that numpy-based data loaders run.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=CUDA)]


@dataclass
class Measurement:
    group: str
    role: str
    median_s: float
    bytes_moved: int | None = None
    items: int | None = None  # images (or samples) per call, for throughput
    speedup_targets: dict = field(default_factory=dict)  # baseline role -> minimum speedup
    bandwidth_targets: dict = field(default_factory=dict)  # baseline role -> minimum bandwidth fraction
    extra: dict = field(default_factory=dict)  # figures measured beside the time (memory, say), saved with it

    @property
    def gb_per_s(self):
        return None if self.bytes_moved is None else self.bytes_moved / self.median_s / 1e9

    @property
    def items_per_s(self):
        return None if self.items is None else self.items / self.median_s


MEASUREMENTS: list[Measurement] = []
FIGURES: dict[str, dict] = {}  # figures that are not timings (resident memory, say), by case; saved with the results


def pytest_addoption(parser):
    parser.addoption("--save-results", action="store_true", help="write benchmarks/results/<device>-<date>.json")
    parser.addoption("--report-only", action="store_true", help="report missed speed targets without failing the run")


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture
def measure(benchmark):
    """measure(fn, group=..., role=..., device=..., bytes_moved=..., items=..., speedup_targets=..., rounds=...,
    extra=...); extra: other figures of the case (a dict), shown and saved with its time."""

    def run(fn, *, group, role, device="cpu", bytes_moved=None, items=None, speedup_targets=None,
            bandwidth_targets=None, rounds=None, extra=None):
        benchmark.group = group
        benchmark.extra_info.update(role=role, device=str(device), **(extra or {}))

        def call():
            fn()
            _sync(device)

        if rounds is None:
            benchmark(call)
        else:  # slow cases: a fixed number of timed rounds after one warm-up
            benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
        if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
            return
        m = Measurement(group, role, benchmark.stats.stats.median, bytes_moved, items,
                        speedup_targets or {}, bandwidth_targets or {}, extra or {})
        if m.gb_per_s is not None:
            benchmark.extra_info["GB_per_s"] = round(m.gb_per_s, 3)
        if m.items_per_s is not None:
            benchmark.extra_info["items_per_s"] = round(m.items_per_s, 1)
        MEASUREMENTS.append(m)

    return run


@pytest.fixture
def figures() -> dict[str, dict]:
    """figures[case] = {...}: figures of a case that are not timings, kept in the saved results."""
    return FIGURES


def comparisons():
    """Every stated target, evaluated against the baseline measured in the same run (met is None when
    the baseline was not measured)."""
    by_key = {(m.group, m.role): m for m in MEASUREMENTS}
    rows = []
    for m in MEASUREMENTS:
        for kind, targets in (("speedup", m.speedup_targets), ("bandwidth", m.bandwidth_targets)):
            for baseline_role, target in targets.items():
                base = by_key.get((m.group, baseline_role))
                if base is None:
                    rows.append(dict(group=m.group, candidate=m.role, baseline=baseline_role, kind=kind, ratio=None,
                                     target=target, met=None))
                    continue
                if kind == "speedup":
                    ratio = base.median_s / m.median_s
                else:
                    ratio = m.gb_per_s / base.gb_per_s
                rows.append(dict(group=m.group, candidate=m.role, baseline=baseline_role, kind=kind,
                                 ratio=round(ratio, 3), target=target, met=ratio >= target))
    return rows


def device_description():
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or "cpu"
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    return f"{model} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def missed_targets(rows) -> list[dict]:
    return [r for r in rows if r["met"] is False]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # A speed target is a claim of the README: missing one fails the benchmark run (never a test under
    # tests/, where timings would make CI flaky), unless the user asked for a report only.
    if missed_targets(comparisons()) and not session.config.getoption("--report-only") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    rows = comparisons()
    if rows:
        terminalreporter.section("speed targets (ratios measured in this run)")
        for r in rows:
            if r["met"] is None:
                terminalreporter.write_line(f"--   {r['group']:<40} {r['candidate']} vs {r['baseline']}: "
                                            f"unchecked, the baseline was not measured in this run")
                continue
            mark = "ok  " if r["met"] else "MISS"
            terminalreporter.write_line(
                f"{mark} {r['group']:<40} {r['candidate']} vs {r['baseline']}: {r['kind']} "
                f"{r['ratio']:.2f}x (target >= {r['target']})"
            )
        missed = missed_targets(rows)
        if missed:
            verdict = "reported only (--report-only)" if config.getoption("--report-only") else "the run fails"
            terminalreporter.write_line(f"{len(missed)} speed target(s) missed: {verdict}", red=True)
    if config.getoption("--save-results") and (MEASUREMENTS or FIGURES):
        RESULTS_DIR.mkdir(exist_ok=True)
        kind = "cuda-" + re.sub(r"\W+", "-", torch.cuda.get_device_name(0)).strip("-").lower() if torch.cuda.is_available() else "cpu"
        stamp = _dt.datetime.now(_dt.timezone.utc)
        path = RESULTS_DIR / f"{kind}-{stamp:%Y%m%d}.json"
        payload = {
            "device": device_description(),
            "torch": torch.__version__,
            "date": stamp.isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "measurements": [
                {**asdict(m), "GB_per_s": m.gb_per_s, "items_per_s": m.items_per_s} for m in MEASUREMENTS
            ],
            "comparisons": rows,
            "figures": FIGURES,
        }
        path.write_text(json.dumps(payload, indent=2))
        terminalreporter.write_line(f"results written to {path}")
