"""Typed run directories: every stage's output as a class that writes and reads it, under one
schema version (``base``), one configuration guard and atomic writes."""

from metamodal.rundir.align import AlignReport, AlignRun, HeadsRun
from metamodal.rundir.base import (
    SCHEMA_VERSION,
    LayoutError,
    RunDir,
    atomic_write,
    claim,
    file_sha256,
    read_json,
    write_json,
)
from metamodal.rundir.extract import ExtractManifest, ExtractRun, ModalityEntry
from metamodal.rundir.mma import MMARun
from metamodal.rundir.zoo import ZooResults, ZooRun

__all__ = ["SCHEMA_VERSION", "AlignReport", "AlignRun", "ExtractManifest", "ExtractRun", "HeadsRun",
           "LayoutError", "MMARun", "ModalityEntry", "RunDir", "ZooResults", "ZooRun", "atomic_write",
           "claim", "file_sha256", "read_json", "write_json"]  # fmt: skip
