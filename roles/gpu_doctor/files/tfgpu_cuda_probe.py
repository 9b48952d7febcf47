#!/usr/bin/env python3
"""Probe the NVIDIA CUDA driver directly, without TensorFlow: prints one JSON document.

Uses only the Python standard library (ctypes on libcuda.so.1), so it runs with the host's
python3 on any node, and on a GPU machine that has no TensorFlow and no Ansible at all
(tests/gpu/device_check.sh). Per device: name, compute capability, memory, PCI bus id and a
memory allocation + host->device->host copy round trip whose bytes are compared.

It never raises for a broken stack: a missing libcuda, a failing cuInit or an absent device
is reported as a status in the JSON ("no_libcuda", "init_failed", "no_device"); the exit
status is 0 unless the arguments are wrong. Python 3.8+ (what ansible-core needs on hosts anyway).
"""

import argparse
import ctypes
import json
import os
import sys

SCHEMA = "tfgpu-provision/cuda-probe/1"
DEFAULT_LIBRARY = "libcuda.so.1"
ROUND_TRIP_BYTES = 1 << 20  # 1 MiB: enough to touch several pages, quick on any GPU

# cuda.h CUresult values the doctor rules care about (names are CUDA's own). cuGetErrorName
# gives the name when the library has it; this table covers libraries that fail before that.
CUDA_ERRORS = {
    0: "CUDA_SUCCESS",
    1: "CUDA_ERROR_INVALID_VALUE",
    2: "CUDA_ERROR_OUT_OF_MEMORY",
    3: "CUDA_ERROR_NOT_INITIALIZED",
    34: "CUDA_ERROR_STUB_LIBRARY",
    46: "CUDA_ERROR_DEVICE_UNAVAILABLE",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
    218: "CUDA_ERROR_INVALID_PTX",
    303: "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    802: "CUDA_ERROR_SYSTEM_NOT_READY",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
    804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}
ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
ATTR_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


class Cuda:
    """The few driver API entry points the probe calls, with readable errors."""

    def __init__(self, lib):
        self.lib = lib

    def has(self, name):
        return hasattr(self.lib, name)

    def error(self, code):
        name = CUDA_ERRORS.get(code)
        text = None
        if self.has("cuGetErrorName"):
            out = ctypes.c_char_p()
            if self.lib.cuGetErrorName(code, ctypes.byref(out)) == 0 and out.value:
                name = out.value.decode("utf-8", "replace")
        if self.has("cuGetErrorString"):
            out = ctypes.c_char_p()
            if self.lib.cuGetErrorString(code, ctypes.byref(out)) == 0 and out.value:
                text = out.value.decode("utf-8", "replace")
        return {"code": code, "name": name or f"CUDA_ERROR_{code}", "message": text}

    def call(self, name, *args):
        """Call ``name``; returns (code, None) or (code, error dict)."""
        func = getattr(self.lib, name)
        func.restype = ctypes.c_int
        code = int(func(*args))
        return code, (None if code == 0 else dict(self.error(code), call=name))


def loaded_path(hint):
    """The file the dynamic loader really mapped for the library (from /proc/self/maps)."""
    base = os.path.basename(hint).split(".so")[0]
    try:
        with open("/proc/self/maps") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 6 and os.path.basename(parts[5]).startswith(base + ".so"):
                    return parts[5]
    except OSError:
        pass
    return None


def library_version(path):
    """``/usr/lib/.../libcuda.so.535.261.03`` -> ``535.261.03`` (the userspace driver)."""
    if not path:
        return None
    real = os.path.basename(os.path.realpath(path))
    marker = ".so."
    if marker not in real:
        return None
    version = real.split(marker, 1)[1]
    return version if version.count(".") >= 1 and version[0].isdigit() else None


def round_trip(cuda, device):
    """Allocate on the device, copy a pattern there and back, compare."""
    result = {"ok": False, "bytes": ROUND_TRIP_BYTES, "error": None}
    ctx = ctypes.c_void_p()
    code, err = cuda.call("cuCtxCreate_v2", ctypes.byref(ctx), ctypes.c_uint(0), device)
    if code:
        result["error"] = err
        return result
    dptr = ctypes.c_uint64(0)
    try:
        code, err = cuda.call(
            "cuMemAlloc_v2", ctypes.byref(dptr), ctypes.c_size_t(ROUND_TRIP_BYTES)
        )
        if code:
            result["error"] = err
            return result
        pattern = bytes(bytearray((i * 7 + 3) % 256 for i in range(ROUND_TRIP_BYTES)))
        src = ctypes.create_string_buffer(pattern, ROUND_TRIP_BYTES)
        dst = ctypes.create_string_buffer(ROUND_TRIP_BYTES)
        size = ctypes.c_size_t(ROUND_TRIP_BYTES)
        code, err = cuda.call("cuMemcpyHtoD_v2", dptr, src, size)
        if not code:
            code, err = cuda.call("cuMemcpyDtoH_v2", dst, dptr, size)
        if code:
            result["error"] = err
        elif dst.raw != pattern:
            got = dst.raw
            mismatched = sum(1 for i in range(len(pattern)) if got[i] != pattern[i])
            result["error"] = {
                "code": None,
                "name": "DATA_MISMATCH",
                "message": f"{mismatched} of {len(pattern)} bytes came back different",
                "call": "cuMemcpyDtoH_v2",
            }
        else:
            result["ok"] = True
        cuda.call("cuMemFree_v2", dptr)
    finally:
        cuda.call("cuCtxDestroy_v2", ctx)
    return result


def describe_device(cuda, index, memcheck):
    info = {
        "index": index,
        "name": None,
        "compute_capability": None,
        "total_memory_bytes": None,
        "pci_bus_id": None,
        "errors": [],
        "memcheck": None,
    }
    device = ctypes.c_int()
    code, err = cuda.call("cuDeviceGet", ctypes.byref(device), ctypes.c_int(index))
    if code:
        info["errors"].append(err)
        return info
    name = ctypes.create_string_buffer(256)
    code, err = cuda.call("cuDeviceGetName", name, ctypes.c_int(256), device)
    if code:
        info["errors"].append(err)
    else:
        info["name"] = name.value.decode("utf-8", "replace")
    major, minor = ctypes.c_int(), ctypes.c_int()
    code, err = cuda.call("cuDeviceGetAttribute", ctypes.byref(major), ATTR_CC_MAJOR, device)
    if not code:
        code, err = cuda.call("cuDeviceGetAttribute", ctypes.byref(minor), ATTR_CC_MINOR, device)
    if code:
        info["errors"].append(err)
    else:
        info["compute_capability"] = f"{major.value}.{minor.value}"
    total = ctypes.c_size_t()
    code, err = cuda.call("cuDeviceTotalMem_v2", ctypes.byref(total), device)
    if code:
        info["errors"].append(err)
    else:
        info["total_memory_bytes"] = int(total.value)
    bus = ctypes.create_string_buffer(64)
    if cuda.has("cuDeviceGetPCIBusId"):
        code, err = cuda.call("cuDeviceGetPCIBusId", bus, ctypes.c_int(64), device)
        if not code:
            info["pci_bus_id"] = bus.value.decode("ascii", "replace").lower()
    if memcheck:
        info["memcheck"] = round_trip(cuda, device)
    return info


def probe(library, memcheck=True):
    doc = {
        "schema": SCHEMA,
        "status": None,
        "library": {"requested": library, "path": None, "version": None, "error": None},
        "init": None,
        "driver_version": None,
        "driver_cuda_version": None,
        "device_count": None,
        "devices": [],
        "environment": {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")},
        "python": sys.version.split()[0],
    }
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        doc["status"] = "no_libcuda"
        doc["library"]["error"] = str(exc)
        return doc
    path = loaded_path(library) or (library if os.path.isabs(library) else None)
    doc["library"]["path"] = path
    doc["library"]["version"] = library_version(path)
    cuda = Cuda(lib)
    if not cuda.has("cuInit"):
        doc["status"] = "no_libcuda"
        doc["library"]["error"] = f"{library} has no cuInit symbol"
        return doc

    version = ctypes.c_int()
    if (
        cuda.has("cuDriverGetVersion")
        and cuda.call("cuDriverGetVersion", ctypes.byref(version))[0] == 0
    ):
        doc["driver_version"] = int(version.value)
        doc["driver_cuda_version"] = f"{version.value // 1000}.{(version.value % 1000) // 10}"

    code, err = cuda.call("cuInit", ctypes.c_uint(0))
    doc["init"] = cuda.error(code) if code else {"code": 0, "name": "CUDA_SUCCESS", "message": None}
    if code == 100:  # CUDA_ERROR_NO_DEVICE
        doc["status"] = "no_device"
        doc["device_count"] = 0
        return doc
    if code:
        doc["status"] = "init_failed"
        return doc

    count = ctypes.c_int()
    code, err = cuda.call("cuDeviceGetCount", ctypes.byref(count))
    if code:
        doc["status"] = "init_failed"
        doc["init"] = err
        return doc
    doc["device_count"] = int(count.value)
    if count.value == 0:
        doc["status"] = "no_device"
        return doc
    doc["devices"] = [describe_device(cuda, i, memcheck) for i in range(count.value)]
    broken = [
        d
        for d in doc["devices"]
        if d["errors"] or (d["memcheck"] is not None and not d["memcheck"]["ok"])
    ]
    doc["status"] = "device_errors" if broken else "ok"
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(description="Probe the CUDA driver; print one JSON document.")
    parser.add_argument(
        "--library",
        default=os.environ.get("TFGPU_LIBCUDA", DEFAULT_LIBRARY),
        help="the CUDA driver library to load (default libcuda.so.1, or $TFGPU_LIBCUDA)",
    )
    parser.add_argument("--no-memcheck", action="store_true", help="skip the copy round trip")
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    doc = probe(args.library, memcheck=not args.no_memcheck)
    text = json.dumps(doc, indent=2, sort_keys=True)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
