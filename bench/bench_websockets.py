"""Live notifications on PostgreSQL and Redis: one daphne process (the ASGI application) holds
BENCH_WS_CONNECTIONS (1,000) WebSocket connections, one user each, opened with tickets.

- Push latency: BENCH_ROUNDS (3) rounds of BENCH_WS_PUSHES (200) notifications made one after
  another in this process (as a web or worker process would: row, commit, push through the
  Redis channel layer), each to a random connected user; from the call to the frame at that
  user's client. Target: p95 under 200 ms (min and median of the rounds' p95).
- Unread counts that never drift: BENCH_WS_CHURN (1,000) creates and mark-reads from 8 threads
  at once over 100 users; once quiet, the last `unread_count` each client got is compared with
  the database's count.
- Memory: the daphne process's resident size before and after the connections, per connection.
"""

import asyncio
import json
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import websockets
from django.db import connection

from bench.capture import User
from bench.common import (
    env_int,
    print_table,
    scratch_database,
    serving,
    summary_ms,
    write_results,
)
from notifications import realtime, services
from notifications.models import Notification

CONNECTIONS = env_int("BENCH_WS_CONNECTIONS", 1000)
PUSHES = env_int("BENCH_WS_PUSHES", 200)
ROUNDS = env_int("BENCH_ROUNDS", 3)
CHURN = env_int("BENCH_WS_CHURN", 1000)
PARAMS = {"invoice_number": "INV-1", "client_name": "Globex", "total": "$10.00"}


def daphne():
    """The ASGI application in one daphne process on the scratch database; (port, process)."""
    return serving(
        lambda port: ["daphne", "-b", "127.0.0.1", "-p", str(port), "invoicegen.asgi:application"]
    )


def resident_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class Clients:
    """Every connection's last unread count, and when each notification reached its client."""

    def __init__(self):
        self.unread: dict[int, int] = {}
        self.arrived: dict[int, float] = {}
        self.sockets = []

    async def open(self, port: int, user_id: int, ticket: str) -> None:
        socket = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/notifications/?ticket={ticket}",
            origin=f"http://127.0.0.1:{port}",
            ping_interval=None,
            max_queue=None,
        )
        self.sockets.append(socket)
        self.unread[user_id] = json.loads(await socket.recv())["unread_count"]
        asyncio.get_running_loop().create_task(self._listen(socket, user_id))

    async def _listen(self, socket, user_id: int) -> None:
        async for text in socket:
            frame = json.loads(text)
            self.unread[user_id] = frame.get("unread_count", self.unread[user_id])
            if frame["type"] == "notification.created":
                self.arrived[frame["notification"]["id"]] = time.perf_counter()

    async def close(self) -> None:
        await asyncio.gather(*(socket.close() for socket in self.sockets))


def churn(users: list[User]) -> None:
    """Creates and mark-reads at once, from 8 threads (each with its own connection)."""

    def one(_):
        user = random.choice(users)
        if random.random() < 0.6:
            services.notify(user, "invoice_paid", params=PARAMS)
        elif unread := Notification.objects.filter(user=user, read_at__isnull=True).first():
            services.mark_read(unread)
        else:
            services.mark_all_read(user)
        connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(CHURN)))


DATABASE = ThreadPoolExecutor(1)  # this process's database work, off the clients' event loop


async def in_database(function, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(
        DATABASE, partial(function, *args, **kwargs)
    )


async def measure(port: int, pid: int, users: list[User]) -> dict:
    tickets = await in_database(lambda: [realtime.issue_ticket(u)[0] for u in users])
    before = resident_kb(pid)
    clients = Clients()
    for start in range(0, len(users), 50):
        batch = zip(users[start : start + 50], tickets[start : start + 50], strict=True)
        await asyncio.gather(*(clients.open(port, user.pk, ticket) for user, ticket in batch))
    await asyncio.sleep(1)
    after = resident_kb(pid)

    rounds = []
    for _ in range(ROUNDS):
        latencies = []
        for _ in range(PUSHES):
            user = random.choice(users)
            started = time.perf_counter()
            notification = await in_database(services.notify, user, "invoice_paid", params=PARAMS)
            while notification.pk not in clients.arrived and time.perf_counter() - started < 5:
                await asyncio.sleep(0.001)
            latencies.append(clients.arrived.get(notification.pk, float("inf")) - started)
        rounds.append(latencies)

    churned = users[:100]
    await in_database(churn, churned)
    await asyncio.sleep(3)  # the last pushes arrive
    counts = await in_database(lambda: {u.pk: services.unread_count(u) for u in churned})
    await in_database(lambda: connection.close())
    drifted = [u.pk for u in churned if clients.unread[u.pk] != counts[u.pk]]
    await clients.close()
    return {
        "connections": len(clients.sockets),
        "push_latency_rounds": [
            summary_ms([s for s in latencies if s != float("inf")]) for latencies in rounds
        ],
        "pushes_lost": sum(s == float("inf") for latencies in rounds for s in latencies),
        "churn_operations": CHURN,
        "clients_whose_last_unread_count_differs_from_the_database": len(drifted),
        "daphne_resident_kb_before": before,
        "daphne_resident_kb_after": after,
        "kb_per_connection": round((after - before) / max(len(clients.sockets), 1), 1),
    }


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_websockets needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    with scratch_database():
        users = User.objects.bulk_create(
            [User(email=f"live{n}@example.com", name=f"Reader {n}") for n in range(CONNECTIONS)]
        )
        with daphne() as (port, process):
            results = asyncio.run(measure(port, process.pid, users))
        with connection.cursor() as cursor:  # what this process's helper threads left open
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    p95s = [latency["p95_ms"] for latency in results["push_latency_rounds"]]
    p50s = [latency["p50_ms"] for latency in results["push_latency_rounds"]]
    results["push_latency_p95_ms_min"], results["push_latency_p95_ms_median"] = (
        min(p95s),
        statistics.median(p95s),
    )
    results["push_latency_p50_ms_median"] = statistics.median(p50s)
    print_table(
        f"WebSockets: {results['connections']:,} connections to one daphne process",
        ["measure", "value"],
        [
            [f"push latency p95 ms, min / median of {ROUNDS} rounds of {PUSHES}",
             f"{min(p95s)} / {statistics.median(p95s)}"],
            ["push latency p50 ms, median of the rounds", statistics.median(p50s)],
            ["pushes lost", results["pushes_lost"]],
            ["clients whose last unread count drifted",
             results["clients_whose_last_unread_count_differs_from_the_database"]],
            ["KB of daphne per connection", results["kb_per_connection"]],
        ],
    )  # fmt: skip
    write_results("websockets", results)
