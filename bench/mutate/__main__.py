"""`python -m bench.mutate [module ...] [--workers N]`: the mutation run (bench/mutate/__init__.py
says what and why). Prints each mutant's outcome as it comes; writes bench/results/mutation.json,
keeping the modules not run this time as they were."""

import argparse
import ast
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import coverage
import psycopg
from psycopg import sql

from bench.mutate import MODULES, Module
from bench.mutate.operators import Mutant, mutants

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "mutation.json"
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "__pycache__", "results", "*.sqlite3", ".pytest_cache"
)
# A mutant's tests get this many times their time without it, and this many seconds more.
SLOWDOWN, GRACE = 3, 30
# Worker N's PostgreSQL database and Redis database.
POSTGRESQL, REDIS = "postgres://postgres@127.0.0.1:5432/", "redis://127.0.0.1:6379/"
REDIS_FIRST, MOST_WORKERS = 10, 5  # Redis databases 10 to 14: CI takes 15


def pytest(workdir: Path, args: list[str], *, env: dict, timeout: float) -> int | None:
    """The exit code of pytest in `workdir`, None if it ran out of time (then killed)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def environment(workdir: Path) -> dict:
    """PostgreSQL and Redis, a database of each worker's (its tests' is test_mutate_workerN,
    created once and kept between mutants); no bytecode written, so that a mutated file is
    always compiled from its text (a cached one of the same size and second would be taken
    for it)."""
    number = int(workdir.name.removeprefix("worker"))
    return {
        **os.environ,
        "DATABASE_URL": f"{POSTGRESQL}mutate_{workdir.name}",
        "REDIS_URL": f"{REDIS}{REDIS_FIRST + number}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(workdir),
    }


def drop_test_databases(workdirs: list[Path]) -> None:
    """The workers' test databases, kept between mutants (--reuse-db)."""
    with psycopg.connect(f"{POSTGRESQL}postgres", autocommit=True) as connection:
        for workdir in workdirs:
            name = sql.Identifier(f"test_mutate_{workdir.name}")
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


class Run:
    def __init__(self, name: str, module: Module, workdirs: list[Path]):
        self.name, self.module, self.workdirs = name, module, workdirs
        self.sources = {path: (ROOT / path).read_text() for path in module.sources}
        self.trees = {path: ast.parse(text) for path, text in self.sources.items()}

    def measure(self) -> tuple[dict[tuple[str, int], set[str]], dict[str, float]]:
        """Which tests run each line of the sources, and each passing test's time."""
        workdir = self.workdirs[0]
        data_file, tests_file = workdir / ".mutate-coverage", workdir / ".mutate-tests.json"
        env = {
            **environment(workdir),
            "MUTATE_COVERAGE_FILE": str(data_file),
            "MUTATE_SOURCES": os.pathsep.join(str(workdir / s) for s in self.module.sources),
            "MUTATE_TESTS_FILE": str(tests_file),
        }
        args = ["-p", "bench.mutate.plugin", "--create-db", *self.module.tests]
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        tests = json.loads(tests_file.read_text())
        passing = {node: t["seconds"] for node, t in tests.items() if t.get("passed")}
        if not passing:
            raise SystemExit(f"{self.name}: no test passes unmutated (PostgreSQL, Redis up?)")
        print(
            f"   {len(passing)} passing tests of {len(tests)}, {time.monotonic() - started:.0f} s"
        )
        data = coverage.CoverageData(basename=str(data_file))
        data.read()
        lines: dict[tuple[str, int], set[str]] = {}
        for source in self.module.sources:
            for line, contexts in data.contexts_by_lineno(str(workdir / source)).items():
                # "": run while the module was imported (a constant, a decorator's argument)
                lines[source, line] = {c for c in contexts if c in passing or c == ""}
        return lines, passing

    def create_databases(self, passing: dict[str, float]) -> None:
        """Each worker's test database, before any mutant runs (none is migrated by mutated
        code); measure made the first's. The quickest passing test must pass on each, kept:
        else every mutant would be taken for killed."""
        quickest = min(passing, key=passing.__getitem__)
        for workdir in self.workdirs:
            database = "--reuse-db" if workdir == self.workdirs[0] else "--create-db"
            env = environment(workdir)
            if pytest(workdir, [database, quickest], env=env, timeout=600) != 0:
                raise SystemExit(f"{self.name}: {quickest} fails in {workdir.name} unmutated")

    def all_mutants(self) -> list[tuple[str, Mutant | None, str, str]]:
        """(source, mutant or None for a hand-made one, key, the mutated text)."""
        found = []
        for source, text in self.sources.items():
            for mutant in mutants(text):
                found.append((source, mutant, f"{source}:{mutant.key}", mutant.apply(text)))
        for made in self.module.hand_made:
            text = self.sources[made.source]
            if text.count(made.text) != 1:
                raise SystemExit(f"{self.name}: the hand-made mutant's text is not in {made.source}"
                                 f" once: {made.text!r}")  # fmt: skip
            key = f"{made.source}:hand:{made.why}"
            found.append((made.source, None, key, text.replace(made.text, made.replacement)))
        return found

    def tests_for(self, source, mutant, mutated, lines, passing) -> list[str]:
        """The tests that run the statement the mutant changes (coverage may know a statement
        by its first line only, such as a constant tuple written over several)."""
        if mutant is not None:
            first, last = mutant.line, mutant.end_line
        else:  # where a hand-made change starts
            pairs = zip(self.sources[source].splitlines(), mutated.splitlines(), strict=False)
            first = last = next((n for n, (a, b) in enumerate(pairs, 1) if a != b), 1)
        containing = [
            (s.lineno, s.end_lineno) for s in ast.walk(self.trees[source])
            if isinstance(s, ast.stmt) and s.lineno <= first <= s.end_lineno
        ]  # fmt: skip
        # none for a decorator's line, which comes before its function's statement
        start, end = min(containing, key=lambda s: s[1] - s[0], default=(first, last))
        span = range(start, max(end, last) + 1)
        tests = set().union(*(lines.get((source, line), set()) for line in span))
        if "" in tests:  # what the import runs reaches every test: all of them decide
            tests = set(passing)
        return sorted(tests, key=passing.__getitem__)  # quick ones first: -x stops at a kill

    def run(self) -> dict:
        print(f"== {self.name}: {', '.join(self.module.sources)}")
        started = time.monotonic()
        lines, passing = self.measure()
        self.create_databases(passing)
        found = self.all_mutants()
        free = list(self.workdirs)
        lock = threading.Lock()
        outcomes = {}
        stale = set()  # workers whose tests were killed: their database may hold a test's rows

        def one(item):
            source, mutant, key, mutated = item
            tests = self.tests_for(source, mutant, mutated, lines, passing)
            if not tests:
                outcome = "survived: no test runs it"
            else:
                with lock:
                    workdir = free.pop()
                try:
                    (workdir / source).write_text(mutated)
                    budget = SLOWDOWN * sum(passing[t] for t in tests) + GRACE
                    database = "--create-db" if workdir in stale else "--reuse-db"
                    code = pytest(workdir, [database, *tests], env=environment(workdir),
                                  timeout=budget)  # fmt: skip
                    if code is None:
                        stale.add(workdir)
                    else:
                        stale.discard(workdir)
                finally:
                    (workdir / source).write_text(self.sources[source])
                    with lock:
                        free.append(workdir)
                outcome = "killed" if code != 0 else "survived"
            with lock:
                outcomes[key] = (source, mutant, outcome)
                print(f"   {len(outcomes)}/{len(found)} {outcome:<26} {key}", flush=True)

        with ThreadPoolExecutor(len(self.workdirs)) as pool:
            list(pool.map(one, found))
        return self.report(outcomes, time.monotonic() - started)

    def report(self, outcomes: dict, seconds: float) -> dict:
        equivalent = self.module.equivalent
        survivors, equivalents = [], []
        for key, (source, mutant, outcome) in sorted(outcomes.items()):
            if outcome == "killed":
                continue
            if key in equivalent:
                equivalents.append({"key": key, "reason": equivalent[key]})
                continue
            where = {"line": mutant.line, "change": mutant.describe(self.sources[source])} if (
                mutant) else {}  # fmt: skip
            why = {"left_because": self.module.left[key]} if key in self.module.left else {}
            survivors.append({"key": key, "outcome": outcome, **where, **why})
        for key in sorted(set(equivalent) | set(self.module.left)):
            if key not in outcomes:
                print(f"   {self.name}: no mutant {key} any more: drop its reason")
            elif outcomes[key][2] == "killed":
                print(f"   {self.name}: {key} is killed now: drop its reason")
        total = len(outcomes)
        killed = sum(1 for *_, outcome in outcomes.values() if outcome == "killed")
        counted = total - len(equivalents)
        result = {
            "sources": list(self.module.sources),
            "tests": list(self.module.tests),
            "mutants": total,
            "killed": killed,
            "survived": total - killed - len(equivalents),
            "equivalent": len(equivalents),
            "score": round(killed / counted, 4) if counted else None,
            "seconds": round(seconds),
            "survivors": survivors,
            "equivalents": equivalents,
        }
        print(f"   {self.name}: {killed} of {counted} killed ({result['score']:.1%}), "
              f"{len(equivalents)} equivalent, {result['seconds']} s")  # fmt: skip
        return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutate", description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(MODULES)} (all)")
    parser.add_argument(
        "--workers", type=int, choices=range(1, MOST_WORKERS + 1),
        default=min(os.cpu_count() or 1, MOST_WORKERS), metavar=f"1-{MOST_WORKERS}",
    )  # fmt: skip
    options = parser.parse_args(argv)
    if unknown := set(options.modules) - set(MODULES):
        parser.error(f"no such module: {', '.join(sorted(unknown))} (of {', '.join(MODULES)})")
    names = options.modules or list(MODULES)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"modules": {}}
    with tempfile.TemporaryDirectory(prefix="mutate-") as scratch:
        workdirs = []
        for number in range(options.workers):
            workdir = Path(scratch) / f"worker{number}"
            shutil.copytree(ROOT, workdir, ignore=NOT_COPIED)
            workdirs.append(workdir)
        try:
            for name in names:
                results["modules"][name] = Run(name, MODULES[name], workdirs).run()
                results["generated_at"] = datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                )
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            drop_test_databases(workdirs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
