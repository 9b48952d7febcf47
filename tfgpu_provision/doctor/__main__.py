"""``python -m tfgpu_provision.doctor``: the doctor command alone, until the main CLI wires it."""

import sys

from tfgpu_provision.doctor.cli import main

sys.exit(main())
