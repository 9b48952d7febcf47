"""Rewrite a venv's own path in its scripts before the venv is renamed.

pip writes the interpreter's absolute path into every console script's shebang (and venv
into its activate scripts), so a venv built in <prefix>.partial must have those paths
changed to <prefix> before the rename. Binary files are left alone: the interpreter finds
its prefix from pyvenv.cfg next to bin/, which moves with the directory.

Usage: relocate_venv.py OLD_PREFIX NEW_PREFIX  (prints {"rewritten": [files]} as JSON)
"""

import json
import os
import sys


def relocate(old, new):
    rewritten = []
    old_b, new_b = old.encode(), new.encode()
    bindir = os.path.join(old, "bin")
    paths = [os.path.join(bindir, name) for name in sorted(os.listdir(bindir))]
    paths.append(os.path.join(old, "pyvenv.cfg"))
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            data = handle.read()
        if b"\0" in data or old_b not in data:
            continue
        mode = os.stat(path).st_mode
        tmp = path + ".tfgpu-tmp"
        with open(tmp, "wb") as handle:
            handle.write(data.replace(old_b, new_b))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        rewritten.append(os.path.relpath(path, old))
    return rewritten


if __name__ == "__main__":
    print(json.dumps({"rewritten": relocate(sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"))}))
