"""MPRNet whole-image inference on the CPU: throughput per official preset, and what tiling saves in memory.

- images/s of Restorer.restore on a 256x256 image (one pass: it fits one tile), batch 1, fp32, no grad,
  for the deblur, denoise and derain presets (random weights: the time does not depend on them).
- peak memory of restoring a 2048x2048 (and a 1024x1024) image tiled (the default 512-px tiles, one per pass) vs untiled
  (mode "official", as the official demo), each in a fresh process, which reports its peak resident set
  size (getrusage ru_maxrss) and its resident size before restoring (the interpreter, torch, the model
  and the image). A fresh process per measurement because ru_maxrss only ever grows: in one process the
  first measurement's peak would hide the others'. A run whose resident size passes MEMORY_LIMIT_GB is
  stopped by this process (which watches it) and reported as needing more, not measured.

No timed assertions: the numbers are reported (and saved with --save-results for the throughput). With
--benchmark-disable (CI) everything runs once, small: 64x64 images for the throughput, and the memory
check of the derain preset only, at 192x192 with 128-px tiles.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ipt.inference import Restorer
from ipt.mprnet import MPRNet
from ipt.mprnet.family import DEFAULT_TILE

PRESETS = ("deblur", "denoise", "derain")  # each restores its own kind of task
THROUGHPUT_SIDE, DISABLED_THROUGHPUT_SIDE = 256, 64
# 2048x2048 as asked of the tiling; 1024x1024 too, which the untiled official presets may fit in the limit.
MEMORY_SIDES, DISABLED_MEMORY_SIDE, DISABLED_TILE = (1024, 2048), 192, 128
MEMORY_LIMIT_GB = 10.0
MEMORY_TIMEOUT_S = 1800

# The measuring process: builds the preset, restores one random image, prints what it measured as JSON.
CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from ipt.inference import Restorer
from ipt.mprnet import MPRNet

preset, side, mode, tile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.manual_seed(0)
model = MPRNet((preset,), preset).eval()
image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
restorer = Restorer.from_model(model, preset, mode=mode, tile=None if tile in ("default", "none") else int(tile))
with open("/proc/self/status") as status:
    before_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
start = time.perf_counter()
restorer.restore(image)
seconds = time.perf_counter() - start
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "before_kb": before_kb,
                  "seconds": seconds, "tiling": restorer.describe_tiling()}))
"""


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    except OSError:  # it has just ended
        return 0


def measure_memory(preset: str, side: int, mode: str, tile: str, limit_gb: float) -> dict:
    """What CHILD reports, or {"over_limit_gb": limit_gb} when its resident size passed the limit (it is
    then killed: this machine's memory is shared)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, preset, str(side), mode, tile], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    limit_kb, start = limit_gb * 1024**2, time.monotonic()
    while child.poll() is None:
        elapsed = time.monotonic() - start
        if _rss_kb(child.pid) > limit_kb or elapsed > MEMORY_TIMEOUT_S:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if elapsed > MEMORY_TIMEOUT_S:
                return {"timed_out_s": MEMORY_TIMEOUT_S}
            return {"over_limit_gb": limit_gb, "after_s": round(elapsed, 1)}
        time.sleep(0.05)
    out, err = child.communicate()
    assert child.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def memory_report(request):
    """Collects the memory measurements and prints them, with the untiled / tiled ratios, at the end."""
    rows = {}
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not rows:
        return
    with capture.global_and_fixture_disabled():  # shown whether the tests pass or not
        _write_memory_report(reporter, rows)


def _write_memory_report(reporter, rows: dict) -> None:
    reporter.write_line("")
    reporter.write_line("MPRNet peak memory (fresh process each; peak RSS, and above the RSS before restoring)")
    for (preset, side, mode), row in sorted(rows.items()):
        if "peak_kb" not in row:
            reporter.write_line(f"  {preset:<8} {side}x{side} {mode:<8} not measured: {row}")
            continue
        reporter.write_line(f"  {preset:<8} {side}x{side} {mode:<8} peak {row['peak_kb'] / 1024**2:6.2f} GB "
                            f"(+{(row['peak_kb'] - row['before_kb']) / 1024**2:5.2f} GB), {row['seconds']:7.1f} s, "
                            f"{row['tiling']}")
    for (preset, side, mode), row in sorted(rows.items()):
        tiled = rows.get((preset, side, "tiled"), {})
        if mode == "untiled" and "peak_kb" in row and "peak_kb" in tiled:
            reporter.write_line(f"  {preset} {side}x{side}: untiled / tiled peak = "
                                f"{row['peak_kb'] / tiled['peak_kb']:.2f}x (above the start: "
                                f"{(row['peak_kb'] - row['before_kb']) / max(tiled['peak_kb'] - tiled['before_kb'], 1):.2f}x)")


@pytest.mark.parametrize("preset", PRESETS)
def test_restore_throughput(measure, benchmark, preset):
    side = DISABLED_THROUGHPUT_SIDE if benchmark.disabled else THROUGHPUT_SIDE
    torch.manual_seed(0)
    restorer = Restorer.from_model(MPRNet((preset,), preset).eval(), preset)
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    measure(lambda: restorer.restore(image), group=f"MPRNet restore {side}x{side} cpu fp32 batch 1", role=preset,
            items=1, rounds=3)


@pytest.mark.parametrize("mode", ["tiled", "untiled"])
@pytest.mark.parametrize("side", MEMORY_SIDES)
@pytest.mark.parametrize("preset", PRESETS)
def test_peak_memory(benchmark, memory_report, preset, side, mode):
    if benchmark.disabled:
        if preset != "derain" or side != MEMORY_SIDES[0]:
            pytest.skip("--benchmark-disable: the memory check runs once, for the derain preset, at a reduced size")
        side, tile = DISABLED_MEMORY_SIDE, str(DISABLED_TILE)
    else:
        tile = "default"
    result = {}

    def run():
        if mode == "tiled":
            result.update(measure_memory(preset, side, "fast", tile, MEMORY_LIMIT_GB))
        else:
            result.update(measure_memory(preset, side, "official", "none", MEMORY_LIMIT_GB))

    benchmark.group = f"MPRNet peak memory {side}x{side} {preset}"
    benchmark.extra_info.update(role=mode, device="cpu")
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)  # minutes each: one round
    memory_report[(preset, side, mode)] = dict(result)
    benchmark.extra_info.update(result)
    if "over_limit_gb" in result:
        pytest.skip(f"{preset} {mode} at {side}x{side} needs more than {MEMORY_LIMIT_GB:g} GB of memory "
                    "(stopped when its resident size passed the limit)")
    if mode == "tiled":
        assert result["tiling"]["tile"] == (DEFAULT_TILE if tile == "default" else int(tile))
