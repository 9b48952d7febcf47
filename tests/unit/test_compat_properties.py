"""Properties of resolve(): it never raises, and every stack it accepts obeys the data."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfgpu_provision.compat import load_matrix, parse_request, resolve
from tfgpu_provision.compat.matrix import dotted
from tfgpu_provision.compat.versions import parse_cc, parse_dotted

MATRIX = load_matrix()
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- junk

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["2.21", "8.0", "535.54.03", "x86_64", "aarch64", "Debian", "none", "pip"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)
FACT_KEYS = ["os", "python", "gpus", "gpu_count", "driver"]
PIN_KEYS = [
    "driver_source",
    "driver_branch",
    "cuda_source",
    "cudnn_source",
    "env_manager",
    "python",
]
junk_facts = st.one_of(junk, st.dictionaries(st.sampled_from(FACT_KEYS), junk, max_size=5))
junk_pins = st.one_of(junk, st.dictionaries(st.sampled_from(PIN_KEYS), junk, max_size=6))
requests = st.one_of(
    junk,
    st.sampled_from([*MATRIX.series_names, "latest", "2.15.0", "2.21.0", "tensorflow-gpu"]),
)


@SETTINGS
@given(request=requests, facts=junk_facts, pins=junk_pins)
def test_resolve_never_raises_on_junk(request: object, facts: object, pins: object) -> None:
    res = resolve(request, facts, pins)
    assert res.ok == (res.stack is not None and not res.errors)
    res.to_dict()  # serialisable without surprises


# ----------------------------------------------------------------------------- well-formed

ALL_CCS = sorted(
    {
        cc
        for cm in MATRIX.cuda_majors.values()
        for cc in (*cm.supported_cc.value, *cm.dropped_cc.value)
    }
    | {"8.8", "11.0", "12.1"}
)
gpu = st.fixed_dictionaries(
    {
        "index": st.integers(0, 15),
        "name": st.sampled_from(["NVIDIA A100-SXM4-80GB", "Tesla K80", "NVIDIA H100", ""]),
        "compute_capability": st.one_of(st.none(), st.sampled_from(ALL_CCS)),
    }
)
driver_version = st.one_of(
    st.none(),
    st.sampled_from(
        ["450.80.02", "470.256.02", "525.60.13", "535.54.03", "555.42.06", "580.65.06"]
    ),
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c:02d}",
        st.integers(300, 700),
        st.integers(0, 300),
        st.integers(0, 99),
    ),
)
facts = st.fixed_dictionaries(
    {},
    optional={
        "os": st.fixed_dictionaries(
            {
                "family": st.sampled_from(["Debian", "RedHat"]),
                "distribution": st.sampled_from(["Debian", "Ubuntu", "Rocky"]),
                "version": st.sampled_from(["12", "22.04", "9"]),
                "arch": st.sampled_from(["x86_64", "x86_64", "aarch64"]),
            }
        ),
        "python": st.builds(lambda m, p: f"3.{m}.{p}", st.integers(6, 14), st.integers(0, 12)),
        "gpus": st.lists(gpu, max_size=4),
        "driver": st.fixed_dictionaries(
            {"version": driver_version, "loaded": st.booleans()},
            optional={"cuda_version": st.sampled_from(["12.2", "13.0"])},
        ),
    },
)
pins = st.fixed_dictionaries(
    {},
    optional={
        "driver_source": st.sampled_from(["distro", "nvidia_repo", "none"]),
        "driver_branch": st.sampled_from(["470", "535", "550", "570", "580", "595", 620]),
        "cuda_source": st.sampled_from(["pip", "conda", "nvidia_repo", "distro", "none"]),
        "cudnn_source": st.sampled_from(["pip", "conda", "nvidia_repo", "none"]),
        "env_manager": st.sampled_from(["conda", "venv"]),
        "python": st.sampled_from(["3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]),
    },
)
good_requests = st.sampled_from(
    [
        *MATRIX.series_names,
        "latest",
        *(r.version.value for s in MATRIX.tensorflow.values() for r in s.releases),
    ]
)


def _cc_ok_for_cuda(cc: str, series: str) -> bool:
    s = MATRIX.tensorflow[series]
    cm = MATRIX.cuda_major_of(s)
    since = cm.cc_since.value.get(cc)
    return cc in cm.supported_cc.value and (since is None or dotted(since) <= dotted(s.cuda.value))


@SETTINGS
@given(request=good_requests, facts=facts, pins=pins)
def test_accepted_stacks_satisfy_every_constraint(
    request: str, facts: dict[str, Any], pins: dict[str, Any]
) -> None:
    res = resolve(request, facts, pins)
    assert res.stack is not None  # a known request always yields a stack
    if not res.ok:
        return
    stack = res.stack
    series = MATRIX.tensorflow[stack.tf_series]
    cm = MATRIX.cuda_major_of(series)
    warned = " ".join(w.message for w in res.warnings)

    assert stack.cuda == series.cuda.value and stack.cudnn == series.cudnn.value
    low, high = dotted(series.python_min.value), dotted(series.python_max.value)
    if stack.python.selected is not None:
        assert low <= dotted(stack.python.selected) <= high
    else:
        assert "PYTHON_UNKNOWN" in {w.code for w in res.warnings}

    minimum = dotted(cm.min_driver.value)
    driver = stack.driver
    installed = parse_dotted((facts.get("driver") or {}).get("version"))
    if driver.action == "keep":
        assert installed is not None and installed >= minimum
    elif driver.action in ("install", "upgrade"):
        assert stack.sources.driver != "none"
        if stack.sources.driver == "distro" and driver.branch is None:
            pass  # the distribution's branch; the driver role checks it against the minimum
        else:
            assert driver.branch is not None and int(driver.branch) >= minimum[0]
    else:
        assert driver.action == "none" and stack.sources.driver == "none"

    for g in facts.get("gpus", []):
        parsed = parse_cc(g["compute_capability"])
        if parsed is None:
            continue
        cc = f"{parsed[0]}.{parsed[1]}"
        assert cc not in cm.dropped_cc.value
        assert parsed >= min(dotted(c) for c in cm.supported_cc.value)
        # Anything CUDA cannot target natively must have been called out.
        assert _cc_ok_for_cuda(cc, series.series) or cc in warned
        if driver.action in ("install", "upgrade") and driver.branch is not None:
            for limit in MATRIX.gpu_last_driver_branch:
                if parsed <= dotted(limit.max_compute_capability.value):
                    assert int(driver.branch) <= int(limit.branch.value)
                    break

    if (facts.get("os") or {}).get("arch") == "aarch64":
        assert stack.sources.cuda == "none"
    if stack.sources.cuda == "pip":
        assert series.and_cuda_extra.value
        assert stack.pip_requirement == f"tensorflow[and-cuda]=={stack.tensorflow}"
    if stack.sources.env == "venv":
        assert "conda" not in (stack.sources.cuda, stack.sources.cudnn)


@SETTINGS
@given(series=st.sampled_from(MATRIX.series_names))
def test_every_series_parses_as_text_and_is_refused_as_a_number(series: str) -> None:
    assert parse_request(series) == series
    assert resolve(float(series), {}, {}).errors[0].code == "RELEASE_AS_NUMBER"
