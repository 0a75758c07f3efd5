import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_validates_and_lists_every_endpoint(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in [
        "/api/auth/signup/", "/api/auth/login/", "/api/auth/logout/", "/api/auth/me/",
        "/api/auth/password/change/", "/api/auth/password/reset/",
        "/api/auth/password/reset/confirm/", "/api/auth/verify-email/",
        "/api/invoices/", "/api/invoices/{id}/", "/api/invoices/{id}/finalize/",
        "/api/invoices/{id}/send/", "/api/invoices/{id}/payments/", "/api/invoices/{id}/pdf/",
        "/api/subscription/", "/api/subscription/cancel/", "/api/subscription/renew/",
    ]:  # fmt: skip
        assert f"  {path}:" in schema


def test_swagger_ui_is_served_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()


def test_admin_login_page_is_served(client):
    assert client.get("/admin/login/").status_code == 200


def test_deploy_check_is_clean_with_production_settings():
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x" * 60 + "-production-like-key-for-the-check-only",
        "ALLOWED_HOSTS": "invoices.example.com",
        "APP_BASE_URL": "https://invoices.example.com",
        "AUDIT_ARCHIVE_SIGNING_KEY": "9" * 43 + "=",
        "PATH": "/usr/bin:/bin",
    }
    result = deploy_check(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    del env["AUDIT_ARCHIVE_SIGNING_KEY"]
    without = deploy_check(env)
    assert without.returncode != 0 and "audit.W003" in without.stdout + without.stderr


def deploy_check(env: dict) -> subprocess.CompletedProcess:
    command = ["check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_refuse_a_missing_secret_key():
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "check"],
        env={"DEBUG": "false", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def settings_process(name: str = "APP_BASE_URL", **env) -> subprocess.CompletedProcess:
    """invoicegen.settings loaded by a process of its own in this environment (a None value
    unsets a variable), printing the setting `name`."""
    return subprocess.run(
        [sys.executable, "-c", f"import invoicegen.settings as s; print(s.{name})"],
        cwd=settings.BASE_DIR,
        env={key: value for key, value in {**os.environ, **env}.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_links_in_emails_follow_the_port_make_run_serves():
    assert settings_process(PORT="8123", APP_BASE_URL=None).stdout == "http://localhost:8123\n"
    given = settings_process(PORT="8123", APP_BASE_URL="https://invoices.example/")
    assert given.stdout == "https://invoices.example\n"


def test_an_unknown_log_format_stops_the_start():
    result = settings_process(LOG_FORMAT="yaml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json, not 'yaml'." in result.stderr


def test_the_spas_origins_are_trusted_for_csrf_unless_set_apart():
    spa = "https://app.example.com"
    assert (
        settings_process(
            "CSRF_TRUSTED_ORIGINS", CORS_ALLOWED_ORIGINS=spa, CSRF_TRUSTED_ORIGINS=None
        ).stdout
        == f"['{spa}']\n"
    )
    assert (
        settings_process(
            "CSRF_TRUSTED_ORIGINS",
            CORS_ALLOWED_ORIGINS=spa,
            CSRF_TRUSTED_ORIGINS="https://a.example",
        ).stdout
        == "['https://a.example']\n"
    )


@pytest.mark.parametrize(
    ("settings_module", "needs"),
    [("invoicegen.settings", None), ("bench.settings", "pghistory")],
)
def test_every_model_change_has_its_migration(settings_module, needs):
    """A model changed without its migration breaks a deploy; the benchmark's peers copy the
    invoice's columns (bench/peers), and a column added to invoices without them breaks
    `make bench`."""
    if needs:
        pytest.importorskip(
            needs, reason="the benchmark's peers: pip install -r requirements-bench.txt"
        )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
    run = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_test_command_collects_every_apps_tests():
    """`make test` runs pytest's testpaths: an app whose tests are outside them is never run."""
    root = Path(settings.BASE_DIR)
    config = configparser.ConfigParser()
    config.read(root / "pytest.ini")
    collected = [root / path for path in config["pytest"]["testpaths"].split()]
    found = [*root.glob("*/tests/test_*.py"), *root.glob("*/*/tests/test_*.py")]
    suites = [path.parent for path in found if not path.parts[len(root.parts)].startswith(".")]
    missing = {
        str(suite.relative_to(root))
        for suite in suites
        if not any(suite == path or path in suite.parents for path in collected)
    }
    assert not missing
