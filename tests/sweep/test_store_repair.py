"""A corrupted, killed or doubly started sweep finishes with every point exactly once,
and says what it repaired or refused, without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.errors import ConfigError
from hwsim.sweep import SweepResult, sweep
from hwsim.sweep.run import result_columns
from hwsim.sweep.spec import spec_from_dict
from hwsim.sweep.store import LOCK, ResultStore, SweepWarning
from tests.sweep.conftest import make_spec

ROOT = Path(__file__).resolve().parents[2]


def _corrupt(part: Path, how: str) -> None:
    data = part.read_bytes()
    if how == "truncated":
        part.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        part.write_bytes(b"")
    elif how == "garbled":
        part.write_bytes(bytes(reversed(data)))
    else:  # a whole Parquet file, but not this sweep's columns
        pq.write_table(pa.table({"point_id": ["x"], "other": [1.0]}), part)


def _raw_rows(out: Path) -> pd.DataFrame:
    return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))]).to_pandas()


@pytest.fixture(scope="module")
def clean_frame() -> pd.DataFrame:
    return sweep(make_spec(), executor="serial").to_frame()


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "foreign"])
def test_unreadable_part_is_set_aside_and_its_points_run_again(tmp_path, how, clean_frame):
    """--resume over a damaged part renames it ``.corrupt`` with a warning naming it,
    evaluates its points again, and ends with each point once, as an undamaged run."""
    out = tmp_path / "out"
    sweep(make_spec(), out, executor="serial", flush_rows=4)
    part = sorted(out.glob("part-*.parquet"))[1]
    _corrupt(part, how)
    with pytest.warns(SweepWarning, match=f"{part}: unreadable part file.*set aside as {part.name}.corrupt"):
        result = sweep(make_spec(), out, executor="serial", flush_rows=4, resume=True)
    assert (out / f"{part.name}.corrupt").is_file()
    raw = _raw_rows(out)
    assert len(raw) == 12 and not raw.duplicated(["point_id", "workload"]).any()
    pd.testing.assert_frame_equal(result.to_frame(), clean_frame)
    pd.testing.assert_frame_equal(SweepResult.load(out).to_frame(), clean_frame)


def test_second_repair_does_not_overwrite_the_first(tmp_path):
    """A part damaged twice is set aside under a fresh name each time; no file is lost."""
    out = tmp_path / "out"
    sweep(make_spec(), out, executor="serial", flush_rows=4)
    for _ in range(2):
        _corrupt(sorted(out.glob("part-*.parquet"))[0], "empty")
        with pytest.warns(SweepWarning):
            sweep(make_spec(), out, executor="serial", flush_rows=4, resume=True)
    assert len(list(out.glob("*.corrupt*"))) == 2
    assert len(_raw_rows(out)) == 12


def test_damaged_directory_without_resume_is_refused_plainly(tmp_path):
    """Without --resume a directory with a damaged part is refused (rows counted from the
    readable footers), not a pyarrow traceback."""
    out = tmp_path / "out"
    sweep(make_spec(), out, executor="serial", flush_rows=4)
    _corrupt(sorted(out.glob("part-*.parquet"))[0], "truncated")
    with pytest.raises(ConfigError, match=r"already holds 8\+ of 12 rows of this sweep; pass --resume"):
        sweep(make_spec(), out, executor="serial")


def test_loading_a_damaged_directory_warns_and_skips(tmp_path):
    """SweepResult.load reads what it can and names the part it skipped (read-only: no rename)."""
    out = tmp_path / "out"
    sweep(make_spec(), out, executor="serial", flush_rows=4)
    part = sorted(out.glob("part-*.parquet"))[2]
    _corrupt(part, "garbled")
    with pytest.warns(SweepWarning, match=f"{part}: unreadable part file skipped"):
        frame = SweepResult.load(out).to_frame()
    assert len(frame) == 8 and part.is_file()


def _store(out: Path) -> ResultStore:
    spec = spec_from_dict(make_spec())
    return ResultStore(out, spec.sweep_id(), result_columns(spec), {"n_rows": 12})


def test_sweep_into_a_directory_in_use_is_refused_then_resumes(tmp_path, clean_frame):
    """While one sweep holds the directory a second is refused with a ConfigError naming
    it; once the first is done, resuming stores every point exactly once."""
    out = tmp_path / "out"
    holder = _store(out)
    holder.open(resume=False)
    try:
        with pytest.raises(ConfigError, match=f"{out}: another sweep \\(process {os.getpid()}\\) is writing"):
            sweep(make_spec(), out, executor="serial", resume=True)
    finally:
        holder.close()
    result = sweep(make_spec(), out, executor="serial", resume=True)
    pd.testing.assert_frame_equal(result.to_frame(), clean_frame)


def test_two_threads_into_one_directory_one_is_refused(tmp_path):
    """Two sweeps started at once in one process: one runs, the other is refused (no
    FileNotFoundError from racing part renames)."""
    out = tmp_path / "out"
    spec = make_spec(parameters={"compute_units.rows": [16, 32, 48, 64, 96, 128],
                                 "memory.dram.bandwidth_bytes_per_s": [5e10, 1e11, 2e11, 4e11]})
    outcomes: list[str] = []

    def run() -> None:
        try:
            sweep(spec, out, executor="serial", flush_rows=2, resume=True)
            outcomes.append("done")
        except ConfigError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2, "a thread died of an exception that is not a ConfigError"
    assert outcomes.count("done") >= 1, outcomes
    assert all(o == "done" or "another sweep" in o for o in outcomes), outcomes
    raw = _raw_rows(out)
    assert len(raw) == 24 and not raw.duplicated(["point_id", "workload"]).any()


_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.sweep.test_store_repair import _store
    _store(Path({out!r})).open(resume=False)
    print("locked", flush=True)
    time.sleep(60)
""")


def test_lock_of_another_process_refuses_and_dies_with_it(tmp_path, clean_frame):
    """A sweep in another process holds the lock (its pid is named); SIGKILL drops it, and
    the resumed sweep stores every point exactly once."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=str(ROOT), out=str(out))],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"another sweep \\(process {proc.pid}\\)"):
            sweep(make_spec(), out, executor="serial", resume=True)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / LOCK).is_file()  # a stale lock file is harmless: the lock died with its holder
    pd.testing.assert_frame_equal(sweep(make_spec(), out, executor="serial", resume=True).to_frame(),
                                  clean_frame)


def test_killed_sweep_with_stale_temporaries_finishes_once(tmp_path, clean_frame):
    """What a kill leaves (a half-written part and manifest, both .tmp) is cleared on resume."""
    out = tmp_path / "out"
    sweep(make_spec(), out, executor="serial", flush_rows=4)
    last = sorted(out.glob("part-*.parquet"))[-1]
    last.rename(last.with_name(last.name + ".tmp"))
    (out / "sweep.json.tmp").write_text("{")
    pd.testing.assert_frame_equal(sweep(make_spec(), out, executor="serial", resume=True).to_frame(),
                                  clean_frame)
    assert not list(out.glob("*.tmp"))
    assert len(_raw_rows(out)) == 12


def test_cli_says_what_it_repaired_and_what_it_refused(tmp_path):
    """The CLI prints the repair as a ``warning:`` line (exit 0) and a busy directory as an
    ``error:`` line (exit 2), never a traceback."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(make_spec(), sort_keys=False))
    out = tmp_path / "out"
    args = ["sweep", str(spec), "-o", str(out), "--executor", "serial", "--no-progress", "--flush-rows", "4"]
    assert CliRunner().invoke(main, args).exit_code == 0
    part = sorted(out.glob("part-*.parquet"))[0]
    _corrupt(part, "empty")
    run = CliRunner().invoke(main, [*args, "--resume"])
    assert run.exit_code == 0, run.output
    assert f"warning: {part}: unreadable part file" in run.output and "; 4 evaluated" in run.output
    holder = _store(out)
    holder.open(resume=True)
    try:
        busy = CliRunner().invoke(main, [*args, "--resume"])
    finally:
        holder.close()
    assert busy.exit_code == 2 and f"error: {out}: another sweep" in busy.output
    assert "Traceback" not in run.output + busy.output


def test_results_directory_that_cannot_be_written_is_a_config_error(tmp_path):
    """A results path under a file (so mkdir fails) is a ConfigError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the results directory"):
        sweep(make_spec(), blocker / "out", executor="serial")
