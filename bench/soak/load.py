"""The load: the SPA's users, their invoices' recipients and a staff member, over HTTP on
loopback. Every answer is recorded (when, what, which status), and so is every action the
product committed, with the audit entry it owes: one `invoice.sent` per send answered 202.

Emails arrive on their own time: an invoice sent now is downloaded and paid once its client's
email reaches the sink, a new account is verified once its verification email does, so that a
fault on the mail side slows the story without stopping the load.
"""

import http.client
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.soak.smtp import Sink

DOWNLOAD_LINK = re.compile(r"https?://[^/\s]+(/downloads/[A-Za-z0-9_-]+/)")
VERIFY_LINK = re.compile(r"verify-email\?uid=([^&\s]+)&token=([^\s\"<]+)")
MAX_ITERATIONS = 100_000  # per thread and run of the load: the scenarios stop it long before


@dataclass(frozen=True)
class Answer:
    scenario: str
    started: float
    ended: float
    method: str
    label: str  # the path with its ids and tokens replaced
    status: int  # 0: no answer (refused, reset, timed out)
    content_type: str
    retry_after: bool


@dataclass(frozen=True)
class Expected:
    """An audit entry the product owes: exactly one per committed action, or at most one
    where the request got no clear answer (it may or may not have committed)."""

    scenario: str
    action: str
    resource_type: str
    resource_id: str
    certain: bool


class Recorder:
    def __init__(self):
        self.scenario = "setup"
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self.expected: list[Expected] = []
        self.problems: list[tuple[str, str]] = []  # (scenario, what the load did not expect)

    def answer(self, **fields) -> None:
        with self._lock:
            self.answers.append(Answer(scenario=self.scenario, **fields))

    def expect(self, action: str, resource: tuple[str, object], *, status: int) -> None:
        """Record the entry that an action answered `status` owes (none when refused)."""
        if 400 <= status < 500:
            return
        with self._lock:
            self.expected.append(
                Expected(self.scenario, action, resource[0], str(resource[1]), status < 300)
            )

    def problem(self, error: Exception) -> None:
        with self._lock:
            self.problems.append((self.scenario, f"{type(error).__name__}: {error}"))

    def of(self, scenario: str) -> tuple[list[Answer], list[Expected], list[str]]:
        with self._lock:
            return (
                [a for a in self.answers if a.scenario == scenario],
                [e for e in self.expected if e.scenario == scenario],
                [p for s, p in self.problems if s == scenario],
            )


@dataclass
class Reply:
    status: int
    data: object = None
    headers: dict = field(default_factory=dict)


class Client:
    """One HTTP client; gunicorn's sync workers close every connection, so each request opens
    its own, as the SPA's requests through a proxy would."""

    def __init__(self, port: int, recorder: Recorder, token: str | None = None):
        self.port = port
        self.recorder = recorder
        self.token = token

    def call(self, method: str, path: str, body=None, *, label: str | None = None) -> Reply:
        headers = {"Accept": "application/json", "User-Agent": "invoicegen-soak"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        reply = Reply(0)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            reply = Reply(response.status, headers={k.lower(): v for k, v in response.getheaders()})
            if reply.headers.get("content-type", "").startswith("application/json") and raw:
                reply.data = json.loads(raw)
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            connection.close()
        self.recorder.answer(
            started=started,
            ended=time.monotonic(),
            method=method,
            label=label or path,
            status=reply.status,
            content_type=reply.headers.get("content-type", "").split(";")[0],
            retry_after="retry-after" in reply.headers,
        )
        return reply


@dataclass
class Account:
    email: str
    user_id: int | None = None
    token: str | None = None


@dataclass
class SentInvoice:
    id: int
    total: str
    client_email: str


@dataclass
class Customer:
    """A user of the SPA with the invoices it waits on (their clients' emails)."""

    account: Account
    awaiting: list[SentInvoice] = field(default_factory=list)
    new_accounts: list[Account] = field(default_factory=list)
    iterations: int = 0


class Load:
    def __init__(self, *, port: int, sink: Sink, recorder: Recorder, password: str):
        self.port = port
        self.sink = sink
        self.recorder = recorder
        self.password = password
        self.run = uuid.uuid4().hex[:6]
        self.customers: list[Customer] = []
        self.staff: Account | None = None
        self._serial = 0
        self._serial_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def client(self, account: Account | None = None) -> Client:
        return Client(self.port, self.recorder, account.token if account else None)

    def _address(self, kind: str) -> str:
        with self._serial_lock:
            self._serial += 1
            return f"{kind}-{self.run}-{self._serial}@example.com"

    # The account lifecycle

    def sign_up(self) -> Account | None:
        account = Account(self._address("user"))
        reply = self.client().call(
            "POST",
            "/api/auth/signup/",
            {"email": account.email, "password": self.password, "name": "Soak Customer"},
        )
        if reply.status != 201:
            return None
        account.user_id = reply.data["id"]
        self.recorder.expect("user.signup", ("user", account.user_id), status=reply.status)
        return account

    def verify(self, account: Account) -> bool | None:
        """Verify through the emailed link and log in; None while the email is not there."""
        found = self.sink.find(account.email, VERIFY_LINK)
        if not found:
            return None
        reply = self.client().call(
            "POST", "/api/auth/verify-email/", {"uid": found[1], "token": found[2]}
        )
        self.recorder.expect("user.email_verified", ("user", account.user_id), status=reply.status)
        return reply.status == 204 and self.log_in(account)

    def log_in(self, account: Account) -> bool:
        reply = self.client().call(
            "POST", "/api/auth/login/", {"email": account.email, "password": self.password}
        )
        self.recorder.expect("user.login", ("user", account.user_id), status=reply.status)
        if reply.status == 200:
            account.token = reply.data["token"]
        return reply.status == 200

    def subscribe(self, account: Account) -> bool:
        reply = self.client(account).call("POST", "/api/subscription/", {"plan": "business"})
        return reply.status == 201

    # What a customer does

    def bill(self, customer: Customer) -> None:
        """Create, finalize and send an invoice; its client's email comes later."""
        client = self.client(customer.account)
        client_email = self._address("client")
        reply = client.call(
            "POST",
            "/api/invoices/",
            {
                "client_name": "Globex Ltd",
                "client_email": client_email,
                "currency": "EUR",
                "due_date": time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400)),
                "items": [
                    {"description": "Design sprint", "quantity": "3", "unit_price": "800.00"},
                    {"description": "Hosting", "quantity": "1", "unit_price": "49.90"},
                ],
            },
        )
        if reply.status != 201:
            return
        invoice = SentInvoice(reply.data["id"], reply.data["total"], client_email)
        resource = ("invoice", invoice.id)
        self.recorder.expect("invoice.created", resource, status=reply.status)
        path = f"/api/invoices/{invoice.id}"
        reply = client.call("POST", f"{path}/finalize/", label="/api/invoices/{id}/finalize/")
        self.recorder.expect("invoice.finalized", resource, status=reply.status)
        if reply.status != 200:
            return
        reply = client.call("POST", f"{path}/send/", {}, label="/api/invoices/{id}/send/")
        self.recorder.expect("invoice.sent", resource, status=reply.status)
        if reply.status == 202:
            customer.awaiting.append(invoice)

    def collect(self, customer: Customer) -> None:
        """Clients whose email arrived download the invoice through its link and pay it;
        new accounts whose verification email arrived are verified and log in."""
        for invoice in list(customer.awaiting):
            found = self.sink.find(invoice.client_email, DOWNLOAD_LINK)
            if not found:
                continue
            customer.awaiting.remove(invoice)
            self.download(found[1], invoice)
            self.pay(customer, invoice)
        for account in list(customer.new_accounts):
            if self.verify(account) is not None:
                customer.new_accounts.remove(account)

    def download(self, path: str, invoice: SentInvoice) -> None:
        browser = self.client()
        browser.call("GET", path, label="/downloads/{token}/")
        reply = browser.call("POST", path, label="/downloads/{token}/")
        self.recorder.expect("download.succeeded", ("invoice", invoice.id), status=reply.status)

    def pay(self, customer: Customer, invoice: SentInvoice) -> None:
        reply = self.client(customer.account).call(
            "POST",
            f"/api/invoices/{invoice.id}/payments/",
            {"amount": invoice.total, "method": "card"},
            label="/api/invoices/{id}/payments/",
        )
        if reply.status == 201:
            self.recorder.expect("payment.processed", ("payment", reply.data["id"]), status=201)
        self.recorder.expect("invoice.paid", ("invoice", invoice.id), status=reply.status)

    def read_notifications(self, customer: Customer) -> None:
        client = self.client(customer.account)
        reply = client.call("GET", "/api/notifications/?is_read=false&page_size=5")
        if reply.status == 200 and reply.data["results"]:
            notification = reply.data["results"][0]["id"]
            client.call(
                "PUT",
                f"/api/notifications/{notification}/read/",
                label="/api/notifications/{id}/read/",
            )
        client.call("GET", "/api/notifications/unread-count/")
        if customer.iterations % 4 == 3:
            client.call("PUT", "/api/notifications/mark-all-read/")

    def read_audit(self) -> None:
        staff = self.client(self.staff)
        staff.call("GET", "/api/audit/logs/?page_size=20")
        staff.call("GET", "/api/audit/logs/?action=invoice.&page_size=20")
        staff.call("GET", "/api/audit/security-events/?page_size=20")

    # Running it

    def start(self, *, pace: float, sign_ups: int = 1) -> None:
        """Each customer in a thread of its own, and the staff member in another; the first
        `sign_ups` customers also sign a new account up."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._customer, args=(c, i < sign_ups, pace), daemon=True)
            for i, c in enumerate(self.customers)
        ]
        self._threads.append(threading.Thread(target=self._staff, args=(pace,), daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _customer(self, customer: Customer, sign_up: bool, pace: float) -> None:
        if sign_up and (account := self.sign_up()):
            customer.new_accounts.append(account)
        for _ in range(MAX_ITERATIONS):
            if self._stop.is_set():
                return
            customer.iterations += 1
            try:
                self.bill(customer)
                self.collect(customer)
                self.read_notifications(customer)
            except Exception as error:  # an answer of a shape the load did not expect
                self.recorder.problem(error)
            self._stop.wait(pace)

    def _staff(self, pace: float) -> None:
        for _ in range(MAX_ITERATIONS):
            if self._stop.wait(pace):
                return
            self.read_audit()

    def drain(self) -> None:
        """What was waiting for an email, now that they have all arrived."""
        for customer in self.customers:
            self.collect(customer)

    def hammer(
        self, port: int, path: str, *, threads: int, enough, max_requests: int, seconds: float
    ) -> int:
        """Requests to `path` on `port` from every customer at once, until `enough()` says so
        (asked every 100 requests), `max_requests` went out or `seconds` passed."""
        deadline = time.monotonic() + seconds
        sent = [0]
        lock = threading.Lock()
        done = threading.Event()

        def worker(customer: Customer) -> None:
            client = Client(port, self.recorder, customer.account.token)
            while not done.is_set():
                with lock:
                    if sent[0] >= max_requests or time.monotonic() > deadline:
                        done.set()
                        return
                    sent[0] += 1
                    check = sent[0] % 100 == 0
                client.call("GET", path)
                if check and enough():
                    done.set()

        workers = [
            threading.Thread(target=worker, args=(self.customers[i % len(self.customers)],))
            for i in range(threads)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return sent[0]
