#!/usr/bin/env bash
# Record what tfgpu-provision sees on a real GPU machine, in one short offline run.
#
#   tests/gpu/device_check.sh OUT_DIR [WHEELS_DIR]
#
# Meant for a machine with an NVIDIA GPU and no internet (e.g. an image with Python 3.12 and
# PyTorch, but no TensorFlow and no Ansible). With WHEELS_DIR, it creates a virtualenv and
# installs the carried wheels (ansible-core, ansible-runner, pyyaml, jinja2, rich and their
# dependencies) with pip --no-index; without it, it uses $PYTHON (default python3), which
# must already import ansible, ansible_runner, yaml, jinja2 and rich. Then it writes, as JSON,
# into OUT_DIR:
#   probe_raw.json   the tfgpu_probe module's raw output (ansible localhost -m tfgpu_probe -o)
#   facts.json       the host facts the controller derives from it (tfgpu_provision.facts)
#   cuda_probe.json  the CUDA driver probe (ctypes on libcuda.so.1; a clean "no device" or
#                    "no libcuda" status on a machine without a GPU)
#   state.json       the doctor's system-state script
#   plan.json        tfgpu-provision plan --tensorflow 2.21 --inventory local --format json
#   doctor.json      tfgpu-provision doctor --inventory local --format json
#   manifest.json    GPU name, date, label (GPU_DATE, for naming fixtures) and each step's status
# Nothing on the machine is changed outside OUT_DIR and a temporary directory.
# Exit status: 0 when every step wrote its JSON, 1 otherwise, 2 on bad arguments.
set -euo pipefail

usage() {
  echo "usage: $0 OUT_DIR [WHEELS_DIR]" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
OUT_DIR=$1
WHEELS_DIR=${2:-}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tfgpu-device-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

if [[ -n $WHEELS_DIR ]]; then
  [[ -d $WHEELS_DIR ]] || { echo "WHEELS_DIR $WHEELS_DIR is not a directory" >&2; exit 2; }
  "${PYTHON:-python3}" -m venv "$WORK/venv"
  "$WORK/venv/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS_DIR" \
    ansible-core ansible-runner pyyaml jinja2 rich
  PY="$WORK/venv/bin/python"
else
  PY=$(command -v "${PYTHON:-python3}") || { echo "no ${PYTHON:-python3} on PATH" >&2; exit 2; }
fi
if ! "$PY" -c 'import ansible, ansible_runner, yaml, jinja2, rich' 2>"$WORK/import.err"; then
  echo "$PY cannot import the controller's dependencies:" >&2
  cat "$WORK/import.err" >&2
  echo "pass a WHEELS_DIR with ansible-core, ansible-runner, pyyaml, jinja2 and rich wheels" >&2
  exit 2
fi
BIN=$(dirname "$PY")
export PATH="$BIN:$PATH"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_CONFIG="$REPO/ansible.cfg"
export TFGPU_RUN_DIR="$WORK/runs"
export ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp"
export ANSIBLE_HOME="$WORK/ansible-home"
export ANSIBLE_CACHE_PLUGIN_CONNECTION="$WORK/facts"

declare -A STATUS=()

# step NAME FILE CMD...: run CMD with stdout into OUT_DIR/FILE; record whether it is JSON.
step() {
  local name=$1 file=$2
  shift 2
  local rc=0
  echo "== $name" >&2
  "$@" >"$OUT_DIR/$file" 2>"$OUT_DIR/$name.stderr" || rc=$?
  if "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$OUT_DIR/$file" 2>/dev/null; then
    STATUS[$name]="ok rc=$rc"
  else
    STATUS[$name]="no-json rc=$rc"
    echo "   $name wrote no JSON (rc=$rc); see $OUT_DIR/$name.stderr" >&2
  fi
}

probe_facts() {
  # -o: one line per host, "HOST | STATUS => {json}", whatever stdout callback is configured.
  "$BIN/ansible" localhost -i localhost, -c local -o \
    -e "ansible_python_interpreter=$PY" \
    -M "$REPO/roles/gpu_preflight/library" -m tfgpu_probe >"$WORK/adhoc.txt"
  "$PY" - "$WORK/adhoc.txt" <<'PYEOF'
import json, sys
line = next(l for l in open(sys.argv[1]) if l.startswith("localhost |"))
status, _, payload = line.partition(" => ")
result = json.loads(payload)
if "SUCCESS" not in status or "raw" not in result:
    sys.exit("tfgpu_probe failed: %s" % result.get("msg", result))
print(json.dumps(result["raw"], indent=2, sort_keys=True))
PYEOF
}

derive_facts() {
  "$PY" - "$OUT_DIR/probe_raw.json" <<'PYEOF'
import json, sys
from tfgpu_provision import facts
raw = json.load(open(sys.argv[1]))
print(json.dumps(facts.host_facts_from_probe(raw), indent=2, sort_keys=True))
PYEOF
}

step probe_raw probe_raw.json probe_facts
step facts facts.json derive_facts
step cuda_probe cuda_probe.json "$PY" "$REPO/roles/gpu_doctor/files/tfgpu_cuda_probe.py"
step state state.json "$PY" "$REPO/roles/gpu_doctor/files/tfgpu_doctor_state.py"
step plan plan.json "$PY" -m tfgpu_provision.cli plan --tensorflow 2.21 --inventory local --format json
step doctor doctor.json "$PY" -m tfgpu_provision.doctor --inventory local --format json

STATUS_LINES=""
for name in "${!STATUS[@]}"; do
  STATUS_LINES+="$name=${STATUS[$name]}"$'\n'
done
"$PY" - "$OUT_DIR" "$STATUS_LINES" <<'PYEOF'
import datetime, json, os, re, sys
out, lines = sys.argv[1], sys.argv[2]
steps = dict(line.split("=", 1) for line in lines.splitlines() if "=" in line)
try:
    cuda = json.load(open(os.path.join(out, "cuda_probe.json")))
except (OSError, ValueError):
    cuda = {}
names = [d.get("name") for d in cuda.get("devices") or [] if d.get("name")]
device = "%dx%s" % (len(names), names[0]) if names else "none"
date = datetime.date.today().isoformat()
label = re.sub(r"[^A-Za-z0-9.]+", "-", "%s_%s" % (device, date)).strip("-")
manifest = {
    "schema": "tfgpu-provision/device-check/1",
    "device": device,
    "cuda_status": cuda.get("status"),
    "date": date,
    "label": label,
    "steps": steps,
}
with open(os.path.join(out, "manifest.json"), "w") as fh:
    json.dump(manifest, fh, indent=2, sort_keys=True)
    fh.write("\n")
print(json.dumps(manifest, indent=2, sort_keys=True))
PYEOF

for name in "${!STATUS[@]}"; do
  [[ ${STATUS[$name]} == ok* ]] || exit 1
done
