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

- **MLPerf Inference v4.0 DLRM-v2 (99 %) Offline on 8x H100 SXM 80GB** ([MLI40-DLRM]:
  568,422 samples/s, mlcommons/inference_results_v4.0 closed/NVIDIA/results/
  DGX-H100_H100-SXM-80GBx8_TRT/dlrm-v2-99/Offline/performance/run_1/mlperf_log_summary.txt),
  group ``dlrm mlperf inference (published)``, held to issue #17's 20 %. Assumptions:
  a LoadGen sample aggregates 100 to 700 user-item pairs (mlcommons/inference
  recommendation/dlrm_v2/pytorch/README.md, "Verifying aggregation trace"); 270 pairs on
  average, the mean of the reference's 100-sample verification trace (27,000 pairs,
  tools/dist_trace_verification.txt; D). Every GPU holds all the tables and runs its own
  batches (NVIDIA's configs/dlrm-v2/Offline: ``embedding_weights_on_gpu_part = 1.0``, the
  8-GPU config inherits the 1-GPU one): ``sharding="data"``; 600,000 pairs per GPU batch
  (``gpu_batch_size = 600_000``). Tables fp16 (assumption: MLCommons' DLRMv3 announcement
  gives DLRMv2 as a 50 GB model, which is 204 M rows x 128 x 2 B = 52 GB, D); MLPs and
  interaction int8 (assumption: the configs override the interaction to fp16 only for the
  99.9 % target, so the 99 % one runs lower precision). Prediction: 8 x 600,000 pairs /
  step time / 270.
"""

from __future__ import annotations

from collections.abc import Iterator

import hwsim
from hwsim.arch.model import Chip
from hwsim.arch.system import System
from hwsim.validation.cases import Case

TRAINING_GROUP = "dlrm training (published)"
INFERENCE_GROUP = "dlrm mlperf inference (published)"
MLPERF_PAIRS_PER_SAMPLE = 270.0  # 27,000 pairs in the reference's 100-sample trace (D)
MLPERF_PAIRS_PER_GPU_BATCH = 600_000  # NVIDIA configs/dlrm-v2/Offline gpu_batch_size
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


def _mlperf_samples_per_s(_: Chip) -> float:
    batch = 8 * MLPERF_PAIRS_PER_GPU_BATCH
    w = hwsim.load_workload("dlrm-mlperf", phase="inference", batch=batch, n_chips=8, sharding="data",
                            embedding_dtype="fp16", dtype="int8")
    return batch / hwsim.simulate(w, "dgx-h100").latency_s / MLPERF_PAIRS_PER_SAMPLE


def recsys_cases() -> Iterator[Case]:
    """Every published DLRM case (see the module docstring for the assumptions)."""
    yield Case(TRAINING_GROUP, "dlrm criteo-1tb train rec/s, 8x A100 40GB, batch 65536, fp32, table-wise",
               "dgx-a100", 5_373_952.0, "rec/s", _records_per_s,
               "[TR-DLRM] mlcommons/training recommendation_v2/torchrec_dlrm/README.MD", "check")
    yield Case(INFERENCE_GROUP, "dlrm-v2-99 offline samples/s, 8x H100, 270 pairs/sample, fp16 tables, "
               "int8 MLPs, data parallel", "dgx-h100", 568_422.0, "samples/s", _mlperf_samples_per_s,
               "[MLI40-DLRM] mlcommons/inference_results_v4.0 closed/NVIDIA DGX-H100_H100-SXM-80GBx8_TRT "
               "dlrm-v2-99 Offline", "check")
