"""The benchmark suite's speed targets: a missed target fails `pytest benchmarks/` (unless --report-only),
a met one passes, and a target whose baseline was not measured is reported as unchecked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# One of the two sleeps 30 ms and the other does not, so a speedup target of 1 is missed by a wide margin
# when the candidate is the slow one, and met by a wide margin when the baseline is.
BENCH = """
import time

def test_baseline(measure):
    measure(lambda: time.sleep({baseline_s}), group="g", role="baseline", rounds=3)

def test_candidate(measure):
    measure(lambda: time.sleep({candidate_s}), group="g", role="candidate", rounds=3,
            speedup_targets={{"baseline": 1.0}})
"""


def run_benchmarks(tmp_path: Path, candidate_slow: bool, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(BENCHMARKS / "conftest.py", tmp_path / "conftest.py")
    slow, fast = 0.03, 0.0
    bench = BENCH.format(candidate_s=slow if candidate_slow else fast, baseline_s=fast if candidate_slow else slow)
    (tmp_path / "test_bench.py").write_text(bench)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("report_only", [False, True])
def test_a_missed_target_fails_the_run_unless_reported_only(tmp_path, report_only):
    result = run_benchmarks(tmp_path, True, *(["--report-only"] if report_only else []))
    assert "MISS g" in result.stdout, result.stdout
    assert "1 speed target(s) missed" in result.stdout
    assert result.returncode == (0 if report_only else 1), result.stdout + result.stderr


def test_a_met_target_passes(tmp_path):
    result = run_benchmarks(tmp_path, False)
    assert "ok   g" in result.stdout and "missed" not in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_target_without_its_baseline_is_unchecked(tmp_path):
    result = run_benchmarks(tmp_path, True, "-k", "candidate")
    assert "unchecked, the baseline was not measured" in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
