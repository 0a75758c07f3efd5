"""The production topology on this machine, every part private to the run: a PostgreSQL cluster
of its own (Debian's binaries, a temporary directory, a free loopback port), a redis-server,
gunicorn, daphne (the WebSockets), two Celery workers and beat. Each part can be stopped,
killed and started again without touching anything else on the machine."""

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from audit.triggers import TABLES as AUDIT_TABLES
from bench.soak.config import APP_ROLE, DATABASE, OWNER_ROLE, Ports, Secrets, database_url
from bench.soak.smtp import Sink, SMTPProxy
from emails.tests.helpers import RedisServer, wait_until

REPO = Path(__file__).resolve().parent.parent.parent


def _postgres_bin() -> Path:
    """The newest Debian PostgreSQL installed (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.parent.name)],
    )
    if not found:
        raise SystemExit("PostgreSQL is not installed: apt-get install postgresql")
    return found[-1].parent


class Postgres:
    """A cluster of the run's own. initdb refuses to run as root, so as root the cluster
    belongs to the `postgres` OS user, as Debian's own clusters do."""

    def __init__(self, port: int, credentials: Secrets):
        self.bin = _postgres_bin()
        self.as_user = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="invoicegen-soak-pg-"))
        if self.as_user:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = port
        self.credentials = credentials

    def _run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_user else []
        return subprocess.run(
            [*prefix, *command],
            check=True,
            capture_output=True,
            text=True,
            cwd=self.dir,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops the cluster
            **kwargs,
        )

    def init(self) -> None:
        password_file = self.dir / "password"
        password_file.write_text(self.credentials.postgres)
        if self.as_user:
            shutil.chown(password_file, "postgres")
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data), "-U", "postgres", f"--pwfile={password_file}",
                "-A", "scram-sha-256", "-E", "UTF8", "--locale=C",
            )  # fmt: skip
        finally:
            password_file.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "max_connections = 200\n"
                # A throwaway cluster: surviving a power cut is not what the soak measures.
                "fsync = off\n"
                "full_page_writes = off\n"
            )

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def connect(self, role: str = "postgres", *, database: str = DATABASE):
        url = database_url(self.port, self.credentials, role).rpartition("/")[0]
        return psycopg.connect(f"{url}/{database}", autocommit=True, connect_timeout=5)

    def create_roles(self) -> None:
        """The owner role owns the database and runs migrations; the app role runs the rest."""
        with self.connect(database="postgres") as conn:
            for role, password in self.credentials.roles.items():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(OWNER_ROLE)
                )
            )

    def app_role_can_write(self) -> bool:
        with self.connect() as conn:
            return conn.execute(
                "SELECT has_table_privilege(%s, 'emails_emaillog', 'SELECT, INSERT, UPDATE')",
                [APP_ROLE],
            ).fetchone()[0]

    def grant_app_role(self) -> None:
        """What `migrate` grants once it runs as the owner: the app role reads and writes the
        tables, and only appends to the audit trail."""
        with self.connect(OWNER_ROLE) as conn:
            app = sql.Identifier(APP_ROLE)
            conn.execute(
                sql.SQL(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
                ).format(app)
            )
            conn.execute(
                sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(app)
            )
            conn.execute(
                sql.SQL("REVOKE UPDATE, DELETE ON {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, AUDIT_TABLES)), app
                )
            )

    def remove(self, *, keep_log_in: Path) -> None:
        if self.pid() is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.copy(self.log, keep_log_in / "postgres.log")
        shutil.rmtree(self.dir, ignore_errors=True)


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc (a pool's workers, a master's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def pid_of_connection(client_port: int | None, server_port: int, pids) -> int | None:
    """Which of `pids` holds the loopback TCP connection from `client_port` (None: from any
    port) to `server_port` (its socket's inode, from /proc/net/tcp, among each process's open
    files)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if remote == server_port and client_port in (None, local):
            inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        if inodes.intersection(_open_files(pid)):
            return pid
    return None


def _open_files(pid: int) -> list[str]:
    found = []
    with contextlib.suppress(OSError):  # the process ended meanwhile
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # the file was closed meanwhile
                found.append(os.readlink(fd))
    return found


def rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
    return int(found.group(1)) if found else None


class Service:
    """One long-lived process of the product in a process group of its own, logging to a
    file; stopping it stops its children too (gunicorn's and the pool's workers)."""

    def __init__(self, name: str, command: list[str], *, env: dict, log_dir: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        return children_of(self.pid) if self.running() else []

    def log_text(self, start: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_for_log(self, text: str, *, timeout: float) -> bool:
        return (
            wait_until(
                lambda: not self.running() or text in self.log_text(), timeout=timeout, interval=0.2
            )
            and self.running()
        )

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: its connections end without a goodbye."""
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # children of a master that died first
            os.killpg(self.pid, signal.SIGKILL)


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_for_port(port: int, *, timeout: float) -> bool:
    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return wait_until(answers, timeout=timeout, interval=0.2)


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "invoicegen", *args, "--loglevel", "INFO"]


class Topology:
    """Every part of the production topology, started in order and stopped in reverse, also
    after a failure or Ctrl-C (the harness calls `stop()` in a finally)."""

    def __init__(self, ports: Ports, credentials: Secrets, env: dict):
        self.ports = ports
        self.credentials = credentials
        self.dir = Path(tempfile.mkdtemp(prefix="invoicegen-soak-"))
        # Every checkpoint is copied out of the database too, and verified against the copy.
        self.checkpoints = self.dir / "checkpoints.jsonl"
        self.env = {**env, "AUDIT_CHECKPOINT_SINK": str(self.checkpoints)}
        self.notes: list[str] = []
        self.postgres = Postgres(ports.postgres, credentials)
        redis_binary = shutil.which("redis-server")
        if redis_binary is None:
            raise SystemExit("redis-server is not installed: apt-get install redis-server")
        self.redis = RedisServer(redis_binary, self.dir)
        self.redis.port = ports.redis
        self.sink = Sink()
        self.proxy = SMTPProxy(ports.smtp, target_port=self.sink.port)
        self.gunicorn = self._gunicorn("gunicorn", ports.web, workers=3)
        # The reconnect storm's own: one worker takes every request, so that 2,000 requests
        # are 2,000 reconnects of one process (3 workers would share them).
        self.storm_gunicorn = self._gunicorn("gunicorn-storm", ports.storm, workers=1)
        self.daphne = Service(
            "daphne",
            [
                *(sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(ports.asgi)),
                "invoicegen.asgi:application",
            ],
            env=self.env,
            log_dir=self.dir,
        )
        self.workers = [
            Service(
                f"worker-{name}",
                _celery("worker", "--pool", "prefork", "--concurrency", "1", "-n", f"{name}@%h"),
                env=self.env,
                log_dir=self.dir,
            )
            for name in ("w1", "w2")
        ]
        self.beat = Service(
            "beat",
            _celery(
                *("beat", "-s", str(self.dir / "beat-schedule")),
                *("--pidfile", str(self.dir / "beat.pid")),
            ),
            env=self.env,
            log_dir=self.dir,
        )

    def _gunicorn(self, name: str, port: int, *, workers: int) -> Service:
        return Service(
            name,
            [
                *(sys.executable, "-m", "gunicorn", "invoicegen.wsgi"),
                *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
                # The worker's pid on each line: reconnects are counted per worker process.
                *("--access-logfile", str(self.dir / f"{name}-access.log")),
                *("--access-logformat", "%(p)s %(s)s"),
            ],
            env=self.env,
            log_dir=self.dir,
        )

    @property
    def storm_access_log(self) -> Path:
        return self.dir / f"{self.storm_gunicorn.name}-access.log"

    def services(self) -> list[Service]:
        return [self.gunicorn, self.storm_gunicorn, self.daphne, *self.workers, self.beat]

    def start(self) -> None:
        self.postgres.init()
        self.postgres.start()
        self.postgres.create_roles()
        self.migrate()
        self.redis.start()
        self.sink.start()
        self.proxy.start()
        for service in self.services():
            service.start()
        for service, port in (
            (self.gunicorn, self.ports.web),
            (self.storm_gunicorn, self.ports.storm),
            (self.daphne, self.ports.asgi),
        ):
            if not wait_for_port(port, timeout=60):
                raise RuntimeError(f"{service.name} did not start: see {service.log_path}")
        for worker in self.workers:
            if not worker.wait_for_log(" ready.", timeout=90):
                raise RuntimeError(f"{worker.name} did not start: see {worker.log_path}")

    def migrate(self) -> None:
        """Migrations run as the owner role (DATABASE_OWNER_URL), the rest as the app role. A
        product that does not know DATABASE_OWNER_URL yet runs them as the app role, which may
        not create tables: then they run as the owner, and the harness grants the app role
        what it needs, and says so."""
        done = manage("migrate", "--noinput", env=self.env)
        if done.returncode != 0:
            if "permission denied" not in done.stdout + done.stderr:
                raise RuntimeError(f"migrate failed:\n{done.stdout}{done.stderr}")
            owner_env = {**self.env, "DATABASE_URL": self.env["DATABASE_OWNER_URL"]}
            done = manage("migrate", "--noinput", env=owner_env)
            if done.returncode != 0:
                raise RuntimeError(f"migrate failed as the owner:\n{done.stdout}{done.stderr}")
            self.notes.append("migrate ignored DATABASE_OWNER_URL: it ran as the owner role")
        if not self.postgres.app_role_can_write():
            self.postgres.grant_app_role()
            self.notes.append("migrate granted the app role nothing: the harness granted it")

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return manage(*args, env={**self.env, **env})

    def processes(self) -> dict[str, tuple[int, ...]]:
        """Who runs each part now: a part restarted behind the harness's back has new pids."""
        found = {
            "postgres": (self.postgres.pid(),),
            "redis": (self.redis.process.pid if self.redis.process else None,),
        }
        for service in self.services():
            found[service.name] = (service.pid if service.running() else None,)
            if service is not self.beat:
                found[f"{service.name} children"] = tuple(service.children())
        return found

    def stop(self) -> None:
        for service in reversed(self.services()):
            service.stop()
        self.proxy.stop()
        self.sink.stop()
        self.redis.kill()
        self.postgres.remove(keep_log_in=self.dir)
