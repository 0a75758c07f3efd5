"""GET / DELETE /api/emails/suppressions/: staff only, paginated, every removal audited."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from audit.tests.helpers import last_entry_id, only_entry
from emails import services
from emails.models import EmailLog, EmailSuppression
from emails.tests.factories import EmailSuppressionFactory
from emails.tests.helpers import reload
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/emails/suppressions/"


@pytest.fixture
def staff_api(client_for):
    return client_for(UserFactory(is_staff=True))


def test_staff_list_suppressions_newest_first_paginated_and_by_address(staff_api):
    older, newer = EmailSuppressionFactory(), EmailSuppressionFactory(address="ap@globex.test")
    page = staff_api.get(URL, {"page_size": 1})
    assert page.status_code == 200
    assert [row["id"] for row in page.json()["results"]] == [newer.pk]
    assert page.json()["next"]
    assert staff_api.get(page.json()["next"]).json()["results"][0]["id"] == older.pk
    found = staff_api.get(URL.rstrip("/"), {"address": "AP@Globex.test"}).json()["results"]
    assert [(row["address"], row["reason"], row["source"]) for row in found] == [
        ("ap@globex.test", "bounced", "postmark")
    ]
    assert staff_api.get(URL, {"reason": "nonsense"}).status_code == 400


def test_others_are_refused(api, anon_client):
    suppression = EmailSuppressionFactory()
    assert anon_client.get(URL).status_code == 401
    assert api.get(URL).status_code == 403
    assert api.delete(f"{URL}{suppression.pk}/").status_code == 403
    assert EmailSuppression.objects.filter(pk=suppression.pk).exists()


def test_staff_removal_is_audited_and_lets_emails_go_again(staff_api, queue, smtp):
    suppression = EmailSuppressionFactory(address="ada@example.com")
    mark = last_entry_id()
    answer = staff_api.delete(f"{URL}{suppression.pk}")
    assert answer.status_code == 204
    assert not EmailSuppression.objects.exists()
    entry = only_entry(mark, "email.suppression_removed")
    assert entry.metadata["address"] == "ada@example.com"
    assert entry.user.is_staff
    email = queue("ada@example.com")
    services.deliver_email(email.pk)
    assert reload(email).status == EmailLog.Status.SENT
    assert staff_api.delete(f"{URL}{suppression.pk}/").status_code == 404
    assert staff_api.delete(f"{URL}nope/").status_code == 404


def test_admin_lists_searches_and_removes_through_the_service(admin):
    gone, kept = EmailSuppressionFactory(address="ap@globex.test"), EmailSuppressionFactory()
    changelist = reverse("admin:emails_emailsuppression_changelist")
    found = admin.get(changelist, {"q": "AP@globex.test"})
    assert [row.pk for row in found.context["cl"].result_list] == [gone.pk]
    mark = last_entry_id()
    admin.post(changelist, {"action": "remove_selected", ACTION_CHECKBOX_NAME: [gone.pk]})
    assert list(EmailSuppression.objects.all()) == [kept]
    assert only_entry(mark, "email.suppression_removed").metadata["address"] == "ap@globex.test"
    assert admin.get(reverse("admin:emails_emailsuppression_add")).status_code == 403
