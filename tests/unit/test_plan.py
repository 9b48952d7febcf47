"""plan's current -> target rows from a preflight summary."""

from __future__ import annotations

from tfgpu_provision import plan

SUMMARY = {
    "host": {
        "gpu_count": 2,
        "python": "3.11.2",
        "driver": {"version": "535.261.03", "cuda_version": "12.2", "state": "ok"},
        "installed": {
            "cuda_toolkits": [{"version": "11.8", "origin": "nvidia-cuda-toolkit"}],
            "cudnn": [{"name": "libcudnn8", "version": "8.9.7.29-1+cuda12.2"}],
            "tf_envs": [{"path": "/opt/tfgpu/envs/tf-gpu-0123", "state": {"tensorflow": "2.20.0"}}],
        },
    },
    "resolution": {
        "stack": {
            "tensorflow": "2.21.0",
            "cuda": "12.5",
            "cudnn": "9.3",
            "python": {"min": "3.10", "max": "3.13", "selected": "3.11"},
            "driver": {"minimum": "525.60.13", "branch": "535", "action": "keep"},
            "sources": {"driver": "distro", "cuda": "pip", "cudnn": "pip", "env": "venv"},
            "pip_requirement": "tensorflow[and-cuda]==2.21.0",
        },
        "warnings": [{"code": "DRIVER_BELOW_TOOLKIT", "message": "m", "fix": "f"}],
    },
    "failures": [],
    "notes": [],
}


def test_rows_show_installed_layers_against_the_target() -> None:
    rows = {layer: (current, target) for layer, current, target in plan.layer_rows(SUMMARY)}
    assert rows["GPUs"][0] == "2 NVIDIA"
    assert rows["driver"] == ("535.261.03", ">= 525.60.13 branch 535 (keep)")
    assert rows["CUDA"] == ("11.8 (driver supports 12.2)", "12.5 via pip")
    assert rows["cuDNN"] == ("8.9.7.29-1+cuda12.2", "9.3 via pip")
    assert rows["Python"] == ("3.11.2", "3.11 (range 3.10-3.13)")
    assert rows["TensorFlow"] == ("2.20.0", "tensorflow[and-cuda]==2.21.0")
    assert rows["env"] == ("/opt/tfgpu/envs/tf-gpu-0123", "venv")


def test_rows_without_a_stack_or_facts_do_not_crash() -> None:
    rows = plan.layer_rows({"host": {}, "resolution": None})
    assert [r[0] for r in rows] == [
        "GPUs",
        "driver",
        "CUDA",
        "cuDNN",
        "Python",
        "TensorFlow",
        "env",
    ]
    assert all(r[2] == "-" for r in rows)
