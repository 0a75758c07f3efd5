"""The ensure_dev_superuser management command."""

import io
import re

import pytest
from django.core.management import call_command

from invoicegen.accounts.models import User
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PRINTED_PASSWORD = re.compile(r"Created superuser admin@localhost with password (\S+) ")


def _run():
    out = io.StringIO()
    call_command("ensure_dev_superuser", stdout=out)
    return out.getvalue()


def test_with_debug_and_no_superuser_it_creates_one_and_prints_its_password(settings):
    settings.DEBUG = True
    UserFactory(is_staff=True)  # staff without superuser rights does not count

    output = _run()

    match = PRINTED_PASSWORD.search(output)
    assert match, output
    admin = User.objects.get(email="admin@localhost")
    assert admin.is_superuser
    assert admin.is_staff
    assert admin.is_active
    assert admin.check_password(match.group(1))
    assert match.group(1) not in admin.password


def test_each_created_superuser_gets_a_fresh_password(settings):
    settings.DEBUG = True
    first = PRINTED_PASSWORD.search(_run()).group(1)
    User.objects.all().delete()

    second = PRINTED_PASSWORD.search(_run()).group(1)

    assert first != second


def test_with_debug_off_it_creates_nothing(settings):
    settings.DEBUG = False

    output = _run()

    assert "DEBUG is off" in output
    assert "password" not in output
    assert not User.objects.exists()


def test_with_a_superuser_already_there_it_creates_nothing(settings):
    settings.DEBUG = True
    existing = UserFactory(is_staff=True, is_superuser=True)

    output = _run()

    assert "exists already" in output
    assert "password" not in output
    assert list(User.objects.all()) == [existing]


def test_running_it_twice_creates_one_superuser(settings):
    settings.DEBUG = True
    _run()

    second = _run()

    assert not PRINTED_PASSWORD.search(second)
    assert User.objects.filter(is_superuser=True).count() == 1
