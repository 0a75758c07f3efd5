"""A pytest plugin for the mutation runner's first pass (bench/mutate): which test runs which
lines of the mutated sources (coverage, one context a test), how long each test takes, and
whether it passes without a mutant. Loaded with `-p bench.mutate.plugin`."""

import json
import os
import time

import coverage
import pytest

# Started as the plugin is imported, before the conftests import the sources: what their
# import runs (constants, decorators) is measured too, under the empty context.
_measured = coverage.Coverage(
    data_file=os.environ["MUTATE_COVERAGE_FILE"],
    include=os.environ["MUTATE_SOURCES"].split(os.pathsep),
)
_measured.start()
_state = {"coverage": _measured, "tests": {}}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _state["test"] = item.nodeid
    _state["coverage"].switch_context(item.nodeid)
    started = time.monotonic()
    yield
    _state["tests"].setdefault(item.nodeid, {})["seconds"] = time.monotonic() - started


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef):
    """A session's or a module's fixture runs in the first test that needs it, and serves the
    ones after it (the database connection and what is installed on it): what it runs is
    measured as the import's, which every test decides, not as that test's."""
    if fixturedef.scope == "function":
        yield
        return
    _state["coverage"].switch_context("")
    yield
    _state["coverage"].switch_context(_state["test"])


def pytest_runtest_logreport(report):
    test = _state["tests"].setdefault(report.nodeid, {"passed": True})
    test["passed"] = test.get("passed", True) and not report.failed


def pytest_unconfigure(config):
    measured = _state.pop("coverage", None)
    if measured is None:
        return
    measured.stop()
    measured.save()
    with open(os.environ["MUTATE_TESTS_FILE"], "w") as out:
        json.dump(_state["tests"], out)
