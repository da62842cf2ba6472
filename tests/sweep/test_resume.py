"""Persistence: a sweep killed mid-run resumes with no point lost or stored twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hwsim.errors import ConfigError
from hwsim.sweep import SweepResult, sweep
from tests.sweep.conftest import make_spec

ROOT = Path(__file__).resolve().parents[2]

# 8 x 8 x 10 = 640 points: long enough (a few seconds serially) to be killed mid-run.
BIG = make_spec(parameters={
    "compute_units.rows": [16, 32, 48, 64, 96, 128, 192, 256],
    "compute_units.cols": [16, 32, 48, 64, 96, 128, 192, 256],
    "memory.dram.bandwidth_bytes_per_s": {"low": 2.0e10, "high": 8.0e11, "log": True, "num": 10},
}, derived={"compute_units.flops_per_cycle.bf16": "2 * compute_units.rows * compute_units.cols"},
    constraints=["power_w <= 14"])


def _cli(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hwsim", "sweep", str(spec), "-o", str(out), "--executor", "serial",
           "--no-progress", "--flush-rows", "10", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stored_rows(out: Path) -> int:
    parts = sorted(out.glob("part-*.parquet"))
    return sum(pq.read_metadata(p).num_rows for p in parts)


def test_killed_sweep_resumes_with_every_point_exactly_once(tmp_path):
    """SIGKILL the CLI after some parts are written; --resume evaluates only the rest;
    the parts then hold every point exactly once and equal an uninterrupted run."""
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(BIG, sort_keys=False))
    out = tmp_path / "out"
    proc = _cli(spec, out)
    deadline = time.monotonic() + 60
    while len(list(out.glob("part-*.parquet"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    stored = _stored_rows(out)
    assert 0 < stored < 640

    resumed = _cli(spec, out, "--resume")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    evaluated = int(re.search(r"; (\d+) evaluated in", stdout).group(1))
    assert evaluated == 640 - stored, "resume evaluates exactly the points not yet stored"

    raw = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))]).to_pandas()
    assert len(raw) == 640 and not raw.duplicated(["point_id", "workload"]).any()
    assert set(raw["point_id"]) == set(range(640))
    assert not list(out.glob("*.tmp"))

    whole = sweep(BIG, executor="serial").to_frame()
    pd.testing.assert_frame_equal(SweepResult.load(out).to_frame(), whole)


def test_rerun_without_resume_or_with_another_spec_is_refused(tmp_path, tiny_spec):
    """A finished directory is not overwritten; a different spec cannot resume into it."""
    out = tmp_path / "out"
    sweep(tiny_spec, out, executor="serial")
    with pytest.raises(ConfigError, match="already holds 12 of 12 rows of this sweep; pass --resume"):
        sweep(tiny_spec, out, executor="serial")
    assert len(sweep(tiny_spec, out, executor="serial", resume=True).to_frame()) == 12
    other = tiny_spec | {"constraints": ["power_w <= 1"]}
    with pytest.raises(ConfigError, match="not this spec's"):
        sweep(other, out, executor="serial", resume=True)


def test_partial_part_left_by_a_crash_is_ignored(tmp_path, tiny_spec):
    """A part file caught mid-write (still .tmp) is discarded on resume, its rows redone."""
    out = tmp_path / "out"
    sweep(tiny_spec, out, executor="serial", flush_rows=4)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3
    parts[-1].rename(parts[-1].with_name(parts[-1].name + ".tmp"))
    frame = sweep(tiny_spec, out, executor="serial", resume=True).to_frame()
    assert list(frame["point_id"]) == list(range(12))
