"""The TypeScript client generated from the API schema (clients/ts) walks the SPA's flows
against the running app, and its program compiles without a cast or a hand-written type.

A schema that disagrees with the server fails here at run time; a schema that types a field
wrongly or too loosely makes the program need a cast, which the second check refuses: so the
schema a SPA generates its client from stays the contract the server keeps.
"""

import contextlib
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from invoicegen.accounts.services import create_auth_token

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "ts"
FLOWS_JS = CLIENT / "build" / "flows.js"
FLOWS_TS = CLIENT / "src" / "flows.ts"
TIMEOUT = 120  # seconds for the whole walk; it takes a few on a laptop
VERIFY_LINK = re.compile(r"\S+/verify-email\?uid=\S+")


def _missing(what: str) -> None:
    message = f"{what} is missing: run make client-ts"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _verification_link(outbox: list, address: str, deadline: float) -> str:
    # The app sends it when the signup commits; polled, since that is in the server's thread.
    while time.monotonic() < deadline:
        for message in list(outbox):
            found = VERIFY_LINK.search(message.body)
            if address in message.to and found:
                return found.group()
        time.sleep(0.05)
    pytest.fail(f"no verification email reached {address}")


def test_the_spa_flows_pass_against_the_running_app(live_server, superuser, mailoutbox):
    node = shutil.which("node")
    if node is None:
        _missing("node")
    if not FLOWS_JS.exists():
        _missing(str(FLOWS_JS.relative_to(CLIENT.parent.parent)))
    env = {**os.environ, "API_URL": live_server.url, "STAFF_TOKEN": create_auth_token(superuser)}
    process = subprocess.Popen(
        [node, str(FLOWS_JS)],
        cwd=CLIENT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Both pipes are drained in threads: the program asks for the emailed link on stdout and
    # waits on stdin, and a full stderr pipe would block it.
    lines: queue.Queue[str | None] = queue.Queue()
    stdout: list[str] = []
    stderr: list[str] = []

    def read_stdout():
        for line in process.stdout:
            stdout.append(line)
            lines.put(line)
        lines.put(None)

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + TIMEOUT
    try:
        while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.01))) is not None:
            if line.startswith("verify-email "):
                address = line.split()[1].rstrip(":")
                link = _verification_link(mailoutbox, address, deadline)
                with contextlib.suppress(BrokenPipeError):  # it died first: its output says why
                    process.stdin.write(link + "\n")
                    process.stdin.close()
        returncode = process.wait(timeout=max(deadline - time.monotonic(), 1))
    except (queue.Empty, subprocess.TimeoutExpired):
        returncode = None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    output = f"stdout:\n{''.join(stdout)}\nstderr:\n{''.join(stderr)}"
    assert returncode is not None, f"the flows took more than {TIMEOUT} s\n{output}"
    assert returncode == 0, f"the flows failed (exit code {returncode})\n{output}"
    assert "all flows passed" in "".join(stdout), output


# What the program may not contain, by name: each is a cast or a type written by hand.
RULES = {
    "an `as` cast": r"\bas\s+[A-Za-z{(\[]",
    "an angle-bracket assertion": r"<[A-Z][A-Za-z]*>\s*[a-z(]",
    "`any`": r"\bany\b",
    "an interface": r"\binterface\s",
    "a type alias": r"^[ \t]*(export\s+)?type\s+\w+\s*=",
    "a @ts- comment": r"@ts-",
    "a non-null assertion": r"[\w)\]]!(?=[.;,)\s\[\]])",
}
# A line each rule must catch: a rule that catches nothing would pass any program.
BAD = [
    ("an `as` cast", "const invoice = data as Invoice;"),
    ("an `as` cast", 'const plans = ["pro"] as const;'),
    ("an `as` cast", "const body = JSON.parse(text) as { id: number };"),
    ("an angle-bracket assertion", "const invoice = <Invoice>data;"),
    ("`any`", "function show(value: any) {}"),
    ("an interface", "interface Invoice { id: number }"),
    ("a type alias", 'type Id = Invoice["id"];'),
    ("a type alias", "  export type Id = number;"),
    ("a @ts- comment", "// @ts-expect-error\nconst id: number = invoice.id;"),
    ("a non-null assertion", "const id = invoice!.id;"),
    ("a non-null assertion", "show(first()!);"),
    ("a non-null assertion", "const id = results[0]!.id;"),
]
# Comments and quoted strings are prose, not code; a @ts- directive is a comment, so it is looked
# for in the whole text. Template literals stay: their ${...} are code.
PROSE = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.DOTALL)


def _code(source: str) -> str:
    return PROSE.sub(lambda match: '""' if match.group()[0] in "\"'" else "", source)


def forbidden(source: str) -> list[str]:
    code = _code(source)
    found = []
    for name, pattern in RULES.items():
        text = source if name == "a @ts- comment" else code
        for match in re.finditer(pattern, text, re.MULTILINE):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{name}: {match.group()!r} (line {line})")
    return sorted(set(found))


@pytest.mark.parametrize(("name", "bad"), BAD)
def test_each_rule_catches_what_it_refuses(name, bad):
    assert any(finding.startswith(f"{name}:") for finding in forbidden(bad)), bad


def test_every_rule_has_a_bad_example():
    assert {name for name, _ in BAD} == set(RULES)


def test_the_rules_leave_comparisons_prose_and_type_arguments_alone():
    good = """
    // Read it as a cast would be; any comment may say so.
    const note = "paid as agreed, any day: interface! type X = 1";
    if (a !== b && c != d && !done) { show(createClient<paths>({ baseUrl })); }
    const seen = new Set<components["schemas"]["AuditLog"]["id"]>();
    """
    assert forbidden(good) == []


def test_the_flows_program_has_no_cast_and_no_hand_written_type():
    assert forbidden(FLOWS_TS.read_text()) == []
