"""Child process of bench_notifications (b): raw smtplib to the bench's SMTP sink, for
reference. `python -m bench.smtp_probe HOST PORT COUNT`: one kept connection, COUNT messages of
about the outbox's size (text and HTML), then `sent=N seconds=S`."""

import smtplib
import sys
import time
from email.message import EmailMessage


def message(n: int) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"Bench {n}"
    mail["From"] = "noreply@invoicegen.local"
    mail["To"] = f"reader{n}@example.com"
    mail.set_content("Hello Reader,\n\n" + "A message from the bench.\n" * 20)
    html = "<html><body><p>Hello Reader,</p>" + "<p>A message.</p>" * 40 + "</body></html>"
    mail.add_alternative(html, subtype="html")
    return mail


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    messages = [message(n) for n in range(count)]
    started = time.perf_counter()
    with smtplib.SMTP(host, port, timeout=10) as client:
        for mail in messages:
            client.send_message(mail)
    print(f"sent={count} seconds={time.perf_counter() - started:.4f}")


if __name__ == "__main__":
    main()
