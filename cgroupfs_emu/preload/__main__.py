"""`python -m cgroupfs_emu.preload build`: compile the library into the package."""

import os
import subprocess
import sys

from .build import HERE, LIBRARY_NAME, compile_library

if sys.argv[1:] != ["build"]:
    print("usage: python -m cgroupfs_emu.preload build", file=sys.stderr)
    sys.exit(2)
try:
    compile_library(os.path.join(HERE, LIBRARY_NAME))
except (OSError, subprocess.CalledProcessError) as e:
    print(f"cannot build the preload library: {e}", file=sys.stderr)
    sys.exit(1)
print(os.path.join(HERE, LIBRARY_NAME))
