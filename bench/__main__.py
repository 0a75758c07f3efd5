"""Run the benchmarks `bench/bench_*.py` (each has a `main()`), or those named on the command
line: `python -m bench audit`. They print tables and write bench/results/<name>.json; they are
not tests. Set DATABASE_URL to a PostgreSQL server: each run works in a database of its own
that it creates and drops.
"""

import importlib
import os
import pkgutil
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def main(argv: list[str]) -> int:
    import django

    django.setup()
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = {f"bench_{name}" for name in argv}
    for name in names:
        if not wanted or name in wanted:
            print(f"== {name}")
            importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
