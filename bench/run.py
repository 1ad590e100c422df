"""`make bench`: run every benchmark script in this folder and print their key=value lines.

Each script prints ``key=value`` lines on stdout (medians, ratios measured side by
side in one run: these machines are shared and noisy). This runner prefixes
nothing and stops at the first failing script, exiting non-zero.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["transcode", "landmarks", "guides", "lut", "synthesis", "pipeline", "memory", "startup", "scale"]


def main(argv: list[str]) -> int:
    wanted = argv or ORDER
    for name in wanted:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"# bench {name}: no script {script.name}", file=sys.stderr)
            continue
        print(f"# bench {name}", flush=True)
        rc = subprocess.call([sys.executable, str(script)])
        if rc != 0:
            print(f"# bench {name} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
