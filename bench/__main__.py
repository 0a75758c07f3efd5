"""Run every benchmark module `bench/bench_*.py` (each has a `main()`), one after the other.

Benchmarks print their figures and write bench/results/<name>.json; they are not tests.
"""

import importlib
import os
import pkgutil
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "invoicegen.settings")


def main() -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if not names:
        print("No benchmarks yet.")
        return 0
    for name in names:
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
