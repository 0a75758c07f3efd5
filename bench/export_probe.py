"""Child process of bench_audit (d): stream the CSV export of the whole trail through the API
and report rows, seconds and this process's peak RSS."""

import os
import resource
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def main() -> None:
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = os.environ["BENCH_EXPORT_DB"]
    django.setup()
    from django.test import Client

    client = Client()
    token = os.environ["BENCH_EXPORT_TOKEN"]
    client.get("/api/audit/logs/", HTTP_AUTHORIZATION=f"Token {token}")  # warm imports
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get("/api/audit/logs/export/?format=csv", HTTP_AUTHORIZATION=f"Token {token}")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"rows={lines - 1} seconds={seconds:.3f} peak_rss_kb={peak} baseline_rss_kb={baseline}")


if __name__ == "__main__":
    main()
