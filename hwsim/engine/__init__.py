"""The discrete-event engine (the only package that imports SimPy)."""

from hwsim.engine.schedule import OpRecord, Schedule, SegmentRun, run_schedule

__all__ = ["OpRecord", "Schedule", "SegmentRun", "run_schedule"]
