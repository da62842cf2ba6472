"""Published recommendation-model (DLRM) figures as validation cases (issue #17, item 5).

- **TorchRec DLRM training on Criteo 1TB, 8x A100 40GB** ([TR-DLRM]: mlcommons/training
  recommendation_v2/torchrec_dlrm/README.MD, "Preliminary Training Results", last row:
  8 GPUs, local batch 8192, global batch 65536, "~5,373,952 rec/s" on an AWS
  p4d.24xlarge). Simulated as one training step of ``dlrm-criteo1tb`` (fp32, SGD on the
  tables, table-wise sharding, TorchRec's default planner choice for tables this size
  being an assumption) on ``dgx-a100`` with its GPUs set to the A100 40GB's HBM2:
  40 GB at 1,555 GB/s (NVIDIA A100 datasheet; the preset is the 80 GB part). The
  README's runs had no ``--amp``: fp32 GEMMs. Recorded, no threshold: hwsim has no eager
  kernel-dispatch cost in this lowering and no input pipeline, so it is expected fast.

Not compared: MLPerf Inference v4.0 DLRM-v2 offline on 8x H100 SXM (568,422 samples/s,
mlcommons/inference_results_v4.0 closed/NVIDIA/results/DGX-H100_H100-SXM-80GBx8_TRT/
dlrm-v2-99/Offline/performance/run_1/mlperf_log_summary.txt): a LoadGen sample there
aggregates 100 to 700 user-item pairs (the reference README, "Verifying aggregation
trace"), and the mean of that distribution was not found in a source, so the figure
cannot be turned into pairs per second without a guess.
"""

from __future__ import annotations

from collections.abc import Iterator

import hwsim
from hwsim.arch.model import Chip
from hwsim.arch.system import System
from hwsim.validation.cases import Case

TRAINING_GROUP = "dlrm training (published)"
A100_40GB_HBM_BYTES = 4.0e10  # 40 GB HBM2 (NVIDIA A100 datasheet)
A100_40GB_HBM_BYTES_PER_S = 1.555e12  # 1,555 GB/s (NVIDIA A100 datasheet)
BATCH = 65536


def a100_40gb_system() -> System:
    """``dgx-a100`` with the A100 40GB's HBM (p4d.24xlarge: 8x A100 40GB over NVSwitch)."""
    system = hwsim.load_system("dgx-a100")
    chip = system.chip
    hbm = chip.memory["hbm"].model_copy(update={"capacity_bytes": A100_40GB_HBM_BYTES,
                                                "bandwidth_bytes_per_s": A100_40GB_HBM_BYTES_PER_S})
    a40 = chip.model_copy(update={"name": "a100-sxm-40gb", "memory": {**chip.memory, "hbm": hbm}})
    return system.model_copy(update={"chip": a40, "name": "p4d-8x-a100-40gb"})


def _records_per_s(_: Chip) -> float:
    w = hwsim.load_workload("dlrm-criteo1tb", phase="train", batch=BATCH, n_chips=8, sharding="table")
    return BATCH / hwsim.simulate(w, a100_40gb_system()).latency_s


def recsys_cases() -> Iterator[Case]:
    """Every published DLRM case (see the module docstring for the assumptions)."""
    yield Case(TRAINING_GROUP, "dlrm criteo-1tb train rec/s, 8x A100 40GB, batch 65536, fp32, table-wise",
               "dgx-a100", 5_373_952.0, "rec/s", _records_per_s,
               "[TR-DLRM] mlcommons/training recommendation_v2/torchrec_dlrm/README.MD", "check")
