"""Failure signatures -> diagnoses (tfgpu_provision.diagnose, data/signatures.yaml).

REFERENCE_TEXTS are the exact texts of ../shared/reference/verify-and-scale.md (A5, A6) and
sandbox-captures.md, written out here on purpose: the test must not pass just because the
data file's own `examples` match its own patterns.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tfgpu_provision import diagnose

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "tf_verify" / "files" / "tfgpu_verify.py"

# (exact text from the reference notes, the signature id it must yield)
REFERENCE_TEXTS: list[tuple[str, str]] = [
    (
        "Could not load dynamic library 'libcudnn.so.8'; dlerror: libcudnn.so.8: cannot open "
        "shared object file: No such file or directory; LD_LIBRARY_PATH: /usr/local/cuda/lib64",
        "dso_load_failed",
    ),
    (
        "W tensorflow/core/common_runtime/gpu/gpu_device.cc:2256] Cannot dlopen some GPU "
        "libraries. Please make sure the missing libraries mentioned above are installed "
        "properly if you would like to use GPU. Follow the guide at "
        "https://www.tensorflow.org/install/gpu for how to download and setup the required "
        "libraries for your platform.",
        "gpu_libraries_missing",
    ),
    ("Skipping registering GPU devices...", "gpu_libraries_missing"),
    (
        "I0000 00:00:1732600000.000000    1234 cudart_stub.cc:31] Could not find cuda drivers on "
        "your machine, GPU will not be used.",
        "cuda_driver_library_missing",
    ),
    (
        "E tensorflow/stream_executor/cuda/cuda_driver.cc:271] failed call to cuInit: "
        "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected",
        "cuinit_no_device",
    ),
    (
        "E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
        "cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected",
        "cuinit_no_device",
    ),
    (
        "I tensorflow/stream_executor/cuda/cuda_diagnostics.cc:176] kernel driver does not appear "
        "to be running on this host (node7): /proc/driver/nvidia/version does not exist",
        "kernel_driver_not_running",
    ),
    ("failed call to cuInit: UNKNOWN ERROR (303)", "cuinit_unknown_error_303"),
    (
        "E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
        "cuInit: UNKNOWN ERROR (303)",
        "cuinit_unknown_error_303",
    ),
    (
        "InternalError: cudaGetDevice() failed. Status: CUDA driver version is insufficient for "
        "CUDA runtime version",
        "driver_too_old_for_cuda",
    ),
    (
        "The NVIDIA driver's CUDA version is 12.4 which is older than the ptxas CUDA version "
        "(12.5.40). Because the driver is older than the ptxas version, XLA is disabling parallel "
        "compilation, which may slow down compilation. You should update your NVIDIA driver or "
        "use the NVIDIA-provided CUDA forward compatibility packages.",
        "driver_older_than_ptxas",
    ),
    (
        "Loaded runtime CuDNN library: 9.1.0 but source was compiled with: 9.3.0.  CuDNN library "
        "needs to have matching major version and equal or higher minor version. If using a "
        "binary install, upgrade your CuDNN library.  If building from sources, make sure the "
        "library loaded at runtime is compatible with the version specified during compile "
        "configuration.",
        "cudnn_version_mismatch",
    ),
    ("DNN library initialization failed", "dnn_initialization_failed"),
    (
        "TensorFlow was not built with CUDA kernel binaries compatible with compute capability "
        "9.0. CUDA kernels will be jit-compiled from PTX, which could take 30 minutes or longer.",
        "ptx_jit_compute_capability",
    ),
    (
        "'cuModuleLoadData(&module, data)' failed with 'CUDA_ERROR_INVALID_PTX'",
        "invalid_ptx",
    ),
    (
        "Can't find libdevice directory ${CUDA_DIR}/nvvm/libdevice. This may result in "
        "compilation or runtime failures",
        "libdevice_missing",
    ),
    ("libdevice not found at ./libdevice.10.bc", "libdevice_missing"),
    (
        "OP_REQUIRES failed at xla_ops.cc:446 : INTERNAL: libdevice not found at ./libdevice.10.bc",
        "libdevice_missing",
    ),
    (
        "Couldn't get ptxas version string: INTERNAL: Couldn't invoke ptxas --version",
        "ptxas_missing",
    ),
    (
        "Couldn't get ptxas version : FAILED_PRECONDITION: Couldn't get ptxas/nvlink version "
        "string",
        "ptxas_missing",
    ),
    ("Failed to launch ptxas", "ptxas_missing"),
    (
        "Relying on driver to perform ptx compilation. Modify $PATH to customize ptxas location.",
        "ptxas_missing",
    ),
    (
        "Falling back to the CUDA driver for PTX compilation; ptxas does not support CC 8.9",
        "ptxas_missing",
    ),
    ("cudaErrorSystemNotReady", "fabric_manager_not_ready"),
    ("Error (gpu_burn-drv.cpp:298): system not yet initialized", "fabric_manager_not_ready"),
    (
        "successful NUMA node read from SysFS had negative value (-1), but there must be at least "
        "one NUMA node, so returning NUMA node zero",
        "numa_node_negative",
    ),
    (
        "I tensorflow/stream_executor/cuda/cuda_gpu_executor.cc:923] could not open file to read "
        "NUMA node: /sys/bus/pci/devices/0000:01:00.0/numa_node",
        "numa_node_unreadable",
    ),
    (
        "Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when "
        "one has already been registered",
        "cudnn_factory_registered_twice",
    ),
    (
        "NCCL is not supported when using virtual GPUs, fallingback to reduction to one device",
        "nccl_disabled_virtual_gpus",
    ),
    (
        "Some requested devices in tf.distribute.Strategy are not visible to TensorFlow: "
        "/job:localhost/replica:0/task:0/device:GPU:3",
        "strategy_devices_not_visible",
    ),
    (
        "There are non-GPU devices in tf.distribute.Strategy, not using nccl allreduce.",
        "strategy_non_gpu_devices",
    ),
    ("Nccl kernel is not found, not using nccl allreduce.", "nccl_kernel_missing"),
    ("ValueError: Memory growth cannot differ between GPU devices", "memory_growth_differs"),
    # sandbox-captures.md
    (
        "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
        "failed: self-signed certificate in certificate chain (_ssl.c:992)'))",
        "tls_certificate_untrusted",
    ),
    (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
        "that the latest NVIDIA driver is installed and running.",
        "nvidia_smi_no_driver",
    ),
    ("nvidia-current/535.261.03: added", "dkms_module_not_built"),
]

# States the check finds without a log line: (context, id).
CONTEXT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"tensorflow_imported": False}, "tensorflow_not_importable"),
    ({"tensorflow_imported": True, "cuda_build": False}, "cpu_only_build"),
    (
        {"gpus_missing": True, "cuda_visible_devices_set": True},
        "gpus_hidden_by_cuda_visible_devices",
    ),
    (
        {"gpus_missing": True, "gpu_hardware_expected": False, "simulated": False},
        "no_gpu_on_host",
    ),
    ({"gpus_missing": True, "gpu_hardware_expected": True}, "gpus_not_visible_to_tensorflow"),
]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tfgpu_verify_for_diagnose", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def ids(found: list[diagnose.Diagnosis]) -> list[str]:
    return [d.id for d in found]


@pytest.mark.parametrize(("text", "expected"), REFERENCE_TEXTS, ids=[e for _, e in REFERENCE_TEXTS])
def test_each_reference_text_yields_its_diagnosis(text: str, expected: str) -> None:
    found = diagnose.diagnose(f"unrelated start-up line\n{text}\nanother line")
    assert ids(found)[0] == expected
    top = found[0]
    assert top.lines == (text.strip()[: diagnose.MAX_QUOTE_CHARS],)
    assert top.cause and top.fix and top.source


@pytest.mark.parametrize(("context", "expected"), CONTEXT_CASES, ids=[e for _, e in CONTEXT_CASES])
def test_each_context_state_yields_its_diagnosis(context: dict[str, Any], expected: str) -> None:
    found = diagnose.diagnose("", context)
    assert expected in ids(found)
    assert diagnose.diagnose("", {}) == []


def test_every_signature_is_covered_by_a_reference_text_or_a_context_case() -> None:
    covered = {e for _, e in REFERENCE_TEXTS} | {e for _, e in CONTEXT_CASES}
    assert {s.id for s in diagnose.load_signatures()} == covered


@pytest.mark.parametrize(
    "signature",
    [s for s in diagnose.load_signatures() if s.examples],
    ids=lambda s: s.id,
)
def test_each_data_example_matches_its_own_signature(signature: diagnose.Signature) -> None:
    for example in signature.examples:
        assert signature.id in ids(diagnose.diagnose(example, dict(signature.when)))


def test_signature_texts_are_complete() -> None:
    # An unquoted " #" in YAML starts a comment and would silently cut a source or a fix.
    for sig in diagnose.load_signatures():
        for text in (sig.source, sig.cause, sig.fix, sig.title):
            assert text.count("(") == text.count(")"), (sig.id, text)
            assert text.count('"') % 2 == 0, (sig.id, text)


def test_clean_log_yields_nothing() -> None:
    log = (
        "I0000 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 gpu_device.cc:2020] Created device /job:localhost/replica:0/task:0/device:GPU:0 "
        "with 79078 MB memory:  -> device: 0, name: NVIDIA H100 80GB HBM3, pci bus id: "
        "0000:18:00.0, compute capability: 9.0\n"
        "INFO:tensorflow:Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/"
        "device:GPU:0',)\n"
    )
    assert diagnose.diagnose(log, {"gpus_missing": False, "gpu_hardware_expected": True}) == []


def test_missing_gpu_explanations_rank_above_other_errors() -> None:
    log = "\n".join(
        [
            "Loaded runtime CuDNN library: 9.1.0 but source was compiled with: 9.3.0.",
            "I cuda_diagnostics.cc] kernel driver does not appear to be running on this host (n1)",
            "successful NUMA node read from SysFS had negative value (-1)",
        ]
    )
    missing = ids(diagnose.diagnose(log, {"gpus_missing": True, "gpu_hardware_expected": True}))
    # what explains the missing GPUs first (the specific cause before the generic fallback),
    # then other errors, the harmless info line last
    assert missing == [
        "kernel_driver_not_running",
        "gpus_not_visible_to_tensorflow",
        "cudnn_version_mismatch",
        "numa_node_negative",
    ]
    # with every GPU visible, plain log order decides among errors
    present = ids(diagnose.diagnose(log, {"gpus_missing": False}))
    assert present == ["cudnn_version_mismatch", "kernel_driver_not_running", "numa_node_negative"]


def test_no_gpu_in_the_host_outranks_the_log_lines() -> None:
    log = "cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."
    context = {"gpus_missing": True, "gpu_hardware_expected": False, "simulated": False}
    assert ids(diagnose.diagnose(log, context)) == [
        "no_gpu_on_host",
        "cuda_driver_library_missing",
    ]
    # a CPU-only TensorFlow build is the root cause even when GPUs are expected
    context = {"gpus_missing": True, "gpu_hardware_expected": True, "cuda_build": False}
    assert ids(diagnose.diagnose(log, context))[0] == "cpu_only_build"


def test_quotes_at_most_three_lines() -> None:
    log = "\n".join(["Could not find cuda drivers on your machine, GPU will not be used."] * 5)
    (found,) = diagnose.diagnose(log)
    assert len(found.lines) == diagnose.MAX_QUOTED_LINES


# Context values the when-clauses use, to compare both matchers on every combination.
_CONTEXT_VALUES = {
    "gpus_missing": (True, False),
    "gpu_hardware_expected": (True, False),
    "simulated": (True, False),
    "cuda_build": (True, False, None),
    "tensorflow_imported": (True, False),
    "cuda_visible_devices_set": (True, False),
}


def test_the_check_scripts_matcher_agrees_with_diagnose() -> None:
    raw = diagnose.load_raw()
    log = [text for text, _ in REFERENCE_TEXTS]
    keys = list(_CONTEXT_VALUES)
    for values in itertools.product(*(_CONTEXT_VALUES[k] for k in keys)):
        context = dict(zip(keys, values, strict=True))
        ours = [d.to_dict() for d in diagnose.diagnose(log, context)]
        theirs = script.match_signatures(log, raw["signatures"], context)
        assert theirs == ours, context


def test_malformed_signature_data_is_rejected() -> None:
    good = diagnose.load_raw()
    base = {"schema": good["schema"], "context_keys": good["context_keys"]}
    entry = {
        "id": "x",
        "title": "t",
        "severity": "error",
        "cause": "c",
        "fix": "f",
        "source": "s",
        "pattern": "abc",
    }
    assert diagnose.parse_signatures({**base, "signatures": [entry]})[0].id == "x"
    bad_cases = [
        ({**entry, "pattern": "("}, "bad pattern"),
        ({**entry, "severity": "fatal"}, "severity"),
        ({**entry, "pattern": None, "when": {"nope": True}}, "unknown context keys"),
        ({k: v for k, v in entry.items() if k != "pattern"}, "needs a 'pattern'"),
        ({**entry, "fix": ""}, "'fix'"),
        ({**entry, "priority": "high"}, "'priority'"),
    ]
    for bad, message in bad_cases:
        with pytest.raises(diagnose.SignatureError, match=message):
            diagnose.parse_signatures({**base, "signatures": [bad]})
    with pytest.raises(diagnose.SignatureError, match="duplicate"):
        diagnose.parse_signatures({**base, "signatures": [entry, entry]})


def test_module_cli_prints_diagnoses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "tf.log"
    log.write_text("failed call to cuInit: UNKNOWN ERROR (303)\n", encoding="utf-8")
    assert diagnose.main([str(log)]) == 0
    assert '"cuinit_unknown_error_303"' in capsys.readouterr().out
    assert diagnose.main([]) == 2
