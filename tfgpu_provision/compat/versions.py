"""Version parsing and comparison, and the parsing of a TensorFlow request.

Everything that reads a version from host facts is lenient (returns ``None`` for
anything it does not understand) because facts come from real, messy hosts.
``parse_request`` is strict because the request comes from the user.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from tfgpu_provision.compat.matrix import Matrix, load_matrix
from tfgpu_provision.errors import BadInput

_DOTTED = re.compile(r"^\d{1,9}(?:\.\d{1,9}){0,5}$")
_MAJOR_MINOR = re.compile(r"^(\d{1,4})\.(\d{1,4})(?!\d)")
_CC = re.compile(r"^(\d{1,3})\.(\d{1,3})$")
_REQUEST = re.compile(r"^(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4})(?:\.post(\d{1,4}))?)?$")
_WHEEL_CC = re.compile(r"^(sm|compute)_(\d+?)(\d)$")


def parse_dotted(value: object) -> tuple[int, ...] | None:
    """``"535.54.03"`` -> ``(535, 54, 3)``; ``None`` for anything else."""
    if not isinstance(value, str) or not _DOTTED.match(value.strip()):
        return None
    return tuple(int(part) for part in value.strip().split("."))


def parse_major_minor(value: object) -> tuple[int, int] | None:
    """The leading ``X.Y`` of a Python version such as ``"3.11.2"`` or ``"3.12.0rc1"``."""
    if not isinstance(value, str):
        return None
    match = _MAJOR_MINOR.match(value.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_cc(value: object) -> tuple[int, int] | None:
    """A compute capability from ``"8.6"``, ``8.6`` or ``(8, 6)``; ``None`` when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = repr(value)
    if isinstance(value, str):
        match = _CC.match(value.strip())
        return (int(match.group(1)), int(match.group(2))) if match else None
    if isinstance(value, Sequence) and len(value) == 2:
        major, minor = value[0], value[1]
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000 for v in value):
            return (int(major), int(minor))
    return None


def format_cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def parse_wheel_cc(entry: str) -> tuple[str, tuple[int, int]] | None:
    """``"sm_89"`` -> ``("sm", (8, 9))``; ``"compute_90"`` -> ``("compute", (9, 0))``."""
    match = _WHEEL_CC.match(entry)
    if not match:
        return None
    return match.group(1), (int(match.group(2)), int(match.group(3)))


def series_of(target: str) -> str:
    """``"2.21.0"`` -> ``"2.21"``; a series is returned unchanged."""
    return ".".join(target.split(".")[:2])


# --------------------------------------------------------------------------- requests


class RequestError(BadInput):
    """A TensorFlow request that cannot be resolved; carries a stable finding code."""

    def __init__(self, code: str, message: str, fix: str) -> None:
        super().__init__(message, fix=fix)
        self.code = code


def _known_list(matrix: Matrix) -> str:
    return ", ".join(matrix.series_names)


def _float_matches(matrix: Matrix, number: float) -> list[str]:
    """Series that YAML would read as ``number`` when written without quotes."""
    return [s for s in matrix.series_names if float(s) == number]


def parse_request(value: object, matrix: Matrix | None = None) -> str:
    """Normalise a TensorFlow request to a series (``"2.21"``) or exact release (``"2.21.0"``).

    ``None`` and ``"latest"`` mean the highest series in the data.  Raises
    :class:`RequestError` (a :class:`BadInput`, exit code 2) for anything else.
    """
    m = matrix if matrix is not None else load_matrix()
    if value is None:
        return m.latest
    if isinstance(value, float):
        raise _number_error(m, value)
    if not isinstance(value, str):
        raise _bad_request(value)
    text = value.strip().lower()
    if text == "latest":
        return m.latest
    if text.startswith(("tensorflow-gpu", "tensorflow_gpu")):
        raise RequestError(
            "TENSORFLOW_GPU_REMOVED",
            "The tensorflow-gpu package was deprecated in December 2022 and its placeholder "
            "release now fails on install.",
            f"Request a TensorFlow version such as '{m.latest}'; the tensorflow package with "
            "its [and-cuda] extra brings GPU support.",
        )
    match = _REQUEST.match(text)
    if not match:
        raise _bad_request(value)
    series = f"{int(match.group(1))}.{int(match.group(2))}"
    if series not in m.tensorflow:
        raise _unknown_release(m, text, series)
    if match.group(3) is None:
        return series
    exact = f"{series}.{int(match.group(3))}"
    if match.group(4) is not None:
        exact += f".post{int(match.group(4))}"
    return exact


def _number_error(m: Matrix, number: float) -> RequestError:
    shown = repr(number) if math.isfinite(number) else str(number)
    matches = _float_matches(m, number) if math.isfinite(number) else []
    if matches:
        meant = " or ".join(matches)
        return RequestError(
            "RELEASE_AS_NUMBER",
            f"The TensorFlow version {shown} was read as a number, so it is probably {meant} "
            "written without quotes and stripped of a trailing zero.",
            f"Quote the version in YAML, for example '{matches[0]}'.",
        )
    return RequestError(
        "RELEASE_AS_NUMBER",
        f"The TensorFlow version {shown} was read as a number, which loses trailing zeros "
        f"(known releases: {_known_list(m)}).",
        f"Quote the version in YAML, for example '{m.latest}'.",
    )


def _unknown_release(m: Matrix, text: str, series: str) -> RequestError:
    hint = [s for s in m.series_names if s == series + "0"]
    if hint:
        return RequestError(
            "UNKNOWN_RELEASE",
            f"TensorFlow {text} is not in the compatibility data (known releases: "
            f"{_known_list(m)}) and is probably {hint[0]} with its trailing zero lost.",
            f"Write '{hint[0]}' (quoted in YAML) if you meant TensorFlow {hint[0]}.",
        )
    return RequestError(
        "UNKNOWN_RELEASE",
        f"TensorFlow {text} is not in the compatibility data, which knows the releases "
        f"{_known_list(m)}.",
        f"Request one of those releases or 'latest' (currently {m.latest}).",
    )


def _bad_request(value: object) -> RequestError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return RequestError(
        "BAD_REQUEST",
        f"{shown} is not a TensorFlow version.",
        "Give a release such as '2.21', an exact version such as '2.21.0', or 'latest'.",
    )
