"""The large input fuzz (run: ``python bench/fuzz_inputs.py``): ~3,000 mutated chip and
system files, sweep specs, Plan / load_workload / hwsim.ops arguments and command lines,
each judged as ``tests/test_fuzz.py`` judges its few hundred (``tests/fuzzing.py`` is the
harness, ``tests/fuzz_families.py`` the families).

Not a CI test: it takes a minute or two. Writes ``bench/results_fuzz.json`` (outcomes
overall and per family, and every failing case) and prints the summary; exits 1 if any
case is a traceback, an unnamed error or an accepted impossible value.

Options: ``--n`` cases per family (default 333), ``--seed`` (default 0), ``--pending``
to add the families not yet held to the standard (model ``config.json`` files), whose
failures are reported but do not fail the run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the harness lives beside the tests

from tests.fuzz_families import FAMILIES, PENDING_FAMILIES  # noqa: E402
from tests.fuzzing import FAILURES, format_report, run_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=333, help="cases per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pending", action="store_true", help="also run the pending families")
    args = parser.parse_args()
    report = run_fuzz(FAMILIES, args.n, seed=args.seed)
    print(format_report(report))
    out: dict = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "seed": args.seed, "cases": report.n_cases, "seconds": round(report.seconds, 1),
        "outcomes": dict(sorted(report.counts.items())),
        "by_family": {k: dict(sorted(v.items())) for k, v in report.by_family.items()},
        "failures": report.failures,
    }
    if args.pending:
        pending = run_fuzz(PENDING_FAMILIES, args.n, seed=args.seed)
        print("pending families (not held to the standard yet):")
        print(format_report(pending))
        out["pending"] = {"cases": pending.n_cases,
                          "by_family": {k: dict(sorted(v.items())) for k, v in pending.by_family.items()},
                          "failures": pending.failures}
    (Path(__file__).parent / "results_fuzz.json").write_text(json.dumps(out, indent=2) + "\n")
    return 1 if any(report.counts[f] for f in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
