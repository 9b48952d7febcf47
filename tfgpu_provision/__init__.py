"""tfgpu-provision: a compatible NVIDIA driver, CUDA, cuDNN and TensorFlow env on every GPU node."""

from __future__ import annotations

__version__ = "0.1.0"
