"""What every benchmark needs: a database of its own, percentiles, a table, a results file."""

import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

RESULTS = Path(__file__).parent / "results"
LOAD_AT_START = os.getloadavg()  # the machine is shared: how busy it was is part of a result


@contextmanager
def scratch_database():
    """A fresh, migrated database beside the configured one (like the test runner's)."""
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


@contextmanager
def archive_storage():
    """The archive in a temporary folder (FileSystemStorage), as conftest.py has it: a run
    never meets an earlier run's months."""
    with tempfile.TemporaryDirectory(prefix="bench-audit-archive-") as folder:
        storage = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": folder},
        }
        with override_settings(STORAGES={**settings.STORAGES, "audit_archive": storage}):
            yield Path(folder)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


def print_verdicts(verdicts: dict) -> None:
    """Each target's figure (the median across rounds), the target, and whether it is met."""
    print_table(
        "targets (medians across rounds)",
        ["figure", "value", "target", "met"],
        [[name, v["value"], v["target"], v["met"]] for name, v in verdicts.items()],
    )


def write_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    meta = {
        "measured_at": timezone.now().isoformat(),
        "database": connection.vendor,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")},
        "load_average_1_5_15_min_at_start": [round(load, 2) for load in LOAD_AT_START],
        "load_average_1_5_15_min_at_end": [round(load, 2) for load in os.getloadavg()],
    }
    path.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    print(f"\nwritten {path.relative_to(RESULTS.parent.parent)}")
    return path


def env_int(name: str, default: int) -> int:
    """Row counts, rounds and repeats come from the environment, so that a smaller run is one
    variable away (BENCH_ROUNDS=3 BENCH_AUDIT_ROWS=100000 ...)."""
    return int(os.environ.get(name, default))


def interleaved(variants: list, measure, *, rounds: int, warmup: int = 1) -> dict[str, list]:
    """Run `measure(variant)` for every variant in each round, the order rotated from round to
    round, so that drift (caches, autovacuum, table growth) hits every variant alike. Each
    variant is configured (switched on, the others off) before its turn, outside the timing.
    The warm-up rounds are thrown away. Returns {variant name: [one value per round]}."""
    values = {variant.name: [] for variant in variants}
    for index in range(warmup + rounds):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            variant.configure()
            gc.collect()
            value = measure(variant)
            if index >= warmup:
                values[variant.name].append(value)
    return values


def compare_runs(runs: dict[str, list], base: str, *, scale: float = 1000.0) -> dict:
    """Min and median of the per-run values (per-run means, in ms by default) and their ratio to
    `base`: the median of the per-round ratios (each computed within the same round) and the
    ratio of the minima."""
    result = {}
    for name, values in runs.items():
        ratios = [value / other for value, other in zip(values, runs[base], strict=True)]
        result[name] = {
            "runs": len(values),
            "min": round(min(values) * scale, 3),
            "median": round(statistics.median(values) * scale, 3),
            "ratio_to_off": round(statistics.median(ratios), 3),
            "ratio_of_minima": round(min(values) / min(runs[base]), 3),
            "per_run": [round(value * scale, 3) for value in values],
        }
    return result


def print_comparison(title: str, result: dict, unit: str = "ms") -> None:
    print_table(
        title,
        ["variant", f"min {unit}", f"median {unit}", "x off (median of rounds)", "x off (minima)"],
        [
            [name, v["min"], v["median"], v["ratio_to_off"], v["ratio_of_minima"]]
            for name, v in result.items()
        ],
    )


# A server of the product, and load on it. --------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(**extra) -> dict:
    """The environment of a child process (gunicorn, Celery) on the scratch database."""
    from django.conf import settings

    url = settings.DATABASES["default"]
    database = f"postgres://{url['USER']}@{url['HOST']}:{url['PORT']}/{url['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": database,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        **extra,
    }


@contextmanager
def serving(arguments, **env):
    """A server of the product (`python -m <arguments(port)>`) on a free port, once it takes
    connections; `env` adds to its environment. Yields (port, process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", *arguments(port)],
        cwd=ROOT,
        env=child_env(**env),
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def gunicorn(workers: int = 2, **env):
    """The product behind gunicorn (its gunicorn.conf.py, sync workers) on a free port."""

    def arguments(port: int) -> list[str]:
        return [
            "gunicorn", "invoicegen.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--log-level", "warning",
        ]  # fmt: skip

    with serving(arguments, **env) as (port, _):
        yield port


def _get(port: int, request: bytes) -> None:
    """One GET over its own connection (gunicorn's sync workers close it after the answer),
    read to the end; anything but a 200 is an error. Plain sockets: the client's own cost
    stays small beside the server's on a machine it shares."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    status = b"".join(chunks[:1])[:12]
    if not status.startswith(b"HTTP/1.1 200") and not status.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(f"{request.split(b' ')[1]!r}: {status!r}")


def hammer(port: int, path: str, token: str, seconds: float, threads: int = 4):
    """Requests/s and latencies of `threads` clients for `seconds`."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < stop:
            started = time.perf_counter()
            _get(port, request)
            latencies.append(time.perf_counter() - started)

    elapsed = run_clients(client, threads)
    return len(latencies) / elapsed, latencies


def run_clients(client, count: int) -> float:
    """Run `client()` in `count` threads at once; the seconds they took together. The first
    error one of them raised is raised here, in the caller's thread."""
    errors: list[Exception] = []

    def guarded():
        try:
            client()
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=guarded) for _ in range(count)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def hammer_interleaved(token: str, endpoints: dict[str, str], *, rounds: int, seconds: float):
    """Requests/s and latencies of each endpoint through gunicorn, in `rounds` interleaved runs
    of `seconds` each (the order rotated, so that drift hits every endpoint alike)."""
    rates = {name: [] for name in endpoints}
    latencies = {name: [] for name in endpoints}
    with gunicorn() as port:
        for path in endpoints.values():
            hammer(port, path, token, 1)  # warm-up
        names = list(endpoints)
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                rate, times = hammer(port, endpoints[name], token, seconds)
                rates[name].append(rate)
                latencies[name] += times
    return rates, latencies
