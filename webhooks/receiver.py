"""A Standard Webhooks receiver on this machine, to watch an endpoint's deliveries: it checks
each one's signature with the endpoint's secret (the standardwebhooks library, as a receiver
elsewhere would), keeps each `webhook-id` once (a retry or a replay of a message is a
duplicate) and answers 204. `make demo` and the benchmarks use it; so can a developer:

    python -m webhooks.receiver --port 8787 --secret whsec_...

prints a line of JSON per delivery. Give its endpoint the URL it prints, on a server with
WEBHOOK_ALLOW_PRIVATE_NETWORKS (and DEBUG, or WEBHOOK_ALLOW_HTTP_LOOPBACK, for http).
"""

import argparse
import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1024 * 1024
SEEN_LIMIT = 100_000  # webhook-ids remembered to tell duplicates, the newest


@dataclass(frozen=True)
class Received:
    webhook_id: str
    headers: dict
    body: bytes
    verified: bool  # its signature matched the secret (None given: False)
    duplicate: bool  # a message with this webhook-id came before

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Serves on `url` in a thread while open (`with Receiver(secret=...) as receiver`).
    `answer(received) -> status` chooses each answer (204 by default); `received` lists every
    request, in order (unless `keep=False`: a long-running receiver forgets them);
    `on_receive` is called with each."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        answer: Callable[[Received], int] | None = None,
        on_receive: Callable[[Received], None] | None = None,
        port: int = 0,
        keep: bool = True,
    ):
        self.secret = secret
        self.answer = answer or (lambda received: 204)
        self.on_receive = on_receive
        self.received: list[Received] = []
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()  # the newest last
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()

    def unique(self) -> list[Received]:
        return [received for received in self.received if not received.duplicate]

    def _verified(self, body: bytes, headers: dict) -> bool:
        if not self.secret:
            return False
        try:
            Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    def _receive(self, headers: dict, body: bytes) -> int:
        webhook_id = headers.get("webhook-id", "")
        verified = self._verified(body, headers)
        with self._lock:
            duplicate = webhook_id in self._seen
            self._seen[webhook_id] = None
            self._seen.move_to_end(webhook_id)
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            received = Received(webhook_id, headers, body, verified, duplicate)
            if self.keep:
                self.received.append(received)
        if self.on_receive:
            self.on_receive(received)
        return self.answer(received)

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.send_response(receiver._receive(headers, body))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A sender that went away mid-request (a killed worker) is no error of the receiver."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--secret", help="the endpoint's whsec_... secret, to check signatures")
    options = parser.parse_args(argv)

    def show(received: Received) -> None:
        try:
            payload = received.payload
        except ValueError:
            payload = received.body.decode("utf-8", "replace")
        line = {
            "webhook_id": received.webhook_id,
            "verified": received.verified,
            "duplicate": received.duplicate,
            "payload": payload,
        }
        print(json.dumps(line), flush=True)

    running = Receiver(secret=options.secret, on_receive=show, port=options.port, keep=False)
    with running as receiver:
        print(f"listening on {receiver.url}", file=sys.stderr, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
