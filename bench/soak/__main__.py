"""`python -m bench.soak [--short] [scenario ...]`: the soak and fault harness (`make soak`).

It brings up the production topology on this machine, every part its own (a PostgreSQL
cluster and a redis-server on free loopback ports, gunicorn with 3 workers, daphne, 2 Celery
workers, beat, an SMTP sink behind a proxy that plays its faults), drives a bounded mixed
load, injects one fault at a time and checks what must survive it. It prints a table, writes
bench/results/soak.json (--short: soak-short.json) and exits 1 if a scenario failed. It stops
everything it started, also on failure or Ctrl-C.
"""

import argparse
import os
import shutil
import signal
import sys
import time

os.environ["DJANGO_SETTINGS_MODULE"] = "invoicegen.settings"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument(
        "--short",
        action="store_true",
        help="the CI run: reconnect storm, task storm, worker kill, SMTP down, webhook worker "
        "kill, daphne restart, in shorter windows",
    )
    parser.add_argument("scenarios", nargs="*", help="run only these (default: all of the run)")
    return parser.parse_args(argv)


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through every finally: the topology stops


def main(argv: list[str]) -> int:
    arguments = _arguments(argv)
    import django

    from bench.soak.config import Ports, Secrets, product_environment

    ports, credentials = Ports.pick(), Secrets()
    env = product_environment(ports, credentials)
    # The harness reads the database as the owner, and logs only what goes wrong.
    os.environ.update({**env, "DATABASE_URL": env["DATABASE_OWNER_URL"], "LOG_LEVEL": "WARNING"})
    django.setup()

    from django.conf import settings

    from bench.common import print_table, write_results
    from bench.soak import scenarios
    from bench.soak.load import Load, Recorder
    from bench.soak.topology import Topology

    plan = [
        (name, scenario)
        for name, scenario in scenarios.FULL
        if (name in scenarios.SHORT or not arguments.short)
        and (not arguments.scenarios or name in arguments.scenarios)
    ]
    unknown = set(arguments.scenarios) - {name for name, _ in scenarios.FULL}
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if arguments.short:
        plan.sort(key=lambda item: scenarios.SHORT.index(item[0]))

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    topology = Topology(ports, credentials, env)
    print(f"== starting the topology in {topology.dir}", flush=True)
    try:
        topology.start()
        recorder = Recorder()
        load = Load(
            port=ports.web, sink=topology.sink, recorder=recorder, password=credentials.password
        )
        run = scenarios.Run(topology, load, recorder, arguments.short)
        scenarios.prepare(run)
        print(f"   up in {time.monotonic() - started:.0f} s", *topology.notes, sep="; ")
        outcomes = [scenarios.play(run, name, scenario) for name, scenario in plan]
    except BaseException:
        print(f"\nthe logs of every process are kept in {topology.dir}", file=sys.stderr)
        raise
    finally:
        topology.stop()
    total = round(time.monotonic() - started, 1)
    passed = all(outcome.passed for outcome in outcomes)
    if passed:
        shutil.rmtree(topology.dir, ignore_errors=True)
    else:
        print(f"\nthe logs of every process are kept in {topology.dir}")

    print_table(
        f"Soak ({'short' if arguments.short else 'full'} run, {total:.0f} s)",
        [
            "scenario",
            "s",
            "requests",
            "5xx in/out",
            "emails q/sent/lost/dup",
            "audit",
            "verify",
            "result",
        ],
        [_row(outcome) for outcome in outcomes],
    )
    for outcome in outcomes:
        for failure in outcome.failures:
            print(f"  {outcome.name}: {failure}")
    write_results(
        "soak-short" if arguments.short else "soak",
        {
            "run": "short" if arguments.short else "full",
            "seconds": total,
            "passed": passed,
            "topology": {
                "gunicorn_workers": 3,
                "daphne": 1,
                "celery_workers": "2 (prefork, concurrency 1)",
                "beat": 1,
                "conn_max_age": 0,
                "notes": topology.notes,
            },
            "settings": {
                name: getattr(settings, name, None)
                for name in (
                    "EMAIL_SEND_TIMEOUT",
                    "EMAIL_SENDING_LEASE_SECONDS",
                    "EMAIL_SWEEP_INTERVAL_SECONDS",
                    "EMAIL_RETRY_BASE_SECONDS",
                    "EMAIL_RETRY_MAX_SECONDS",
                    "EMAIL_MAX_ATTEMPTS",
                    "WEBHOOK_TIMEOUT",
                    "WEBHOOK_SENDING_LEASE_SECONDS",
                    "WEBHOOK_SWEEP_INTERVAL_SECONDS",
                )
            },
            "scenarios": {
                outcome.name: {
                    "passed": outcome.passed,
                    "failures": outcome.failures,
                    **outcome.figures,
                }
                for outcome in outcomes
            },
        },
    )
    return 0 if passed else 1


def _row(outcome) -> list:
    figures = outcome.figures
    requests = figures.get("requests", {})
    emails = figures.get("emails", {})
    return [
        outcome.name,
        figures.get("seconds", ""),
        requests.get("total", ""),
        f"{requests.get('5xx_inside', '-')}/{requests.get('5xx_outside', '-')}",
        "/".join(str(emails.get(k, "-")) for k in ("queued", "sent", "lost", "duplicated")),
        "ok" if figures.get("audit", {}).get("wrong") == 0 else "WRONG",
        "ok" if figures.get("verify_audit_log", {}).get("ok") else "FAILED",
        "pass" if outcome.passed else "FAIL",
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
