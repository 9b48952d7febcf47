"""Compatibility engine: TensorFlow release -> Python, CUDA, cuDNN and driver.

Pure resolution over the packaged data in ``matrix.yaml``; no host access here.
"""

from __future__ import annotations

from tfgpu_provision.compat.matrix import Matrix, MatrixDataError, Sourced, load_matrix
from tfgpu_provision.compat.resolve import (
    DriverPlan,
    Finding,
    InstallSources,
    PythonPlan,
    Resolution,
    Stack,
    resolve,
)
from tfgpu_provision.compat.versions import RequestError, parse_request

__all__ = [
    "DriverPlan",
    "Finding",
    "InstallSources",
    "Matrix",
    "MatrixDataError",
    "PythonPlan",
    "RequestError",
    "Resolution",
    "Sourced",
    "Stack",
    "load_matrix",
    "parse_request",
    "resolve",
]
