"""The Django admin pages for users and API tokens, used by a superuser."""

import pytest
from django.urls import reverse

from invoicegen.accounts import services
from invoicegen.accounts.models import AuthToken, User
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from notifications import preferences
from notifications.tests.factories import NO_PREFERENCE_FORMS

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:accounts_user_changelist")
ADD = reverse("admin:accounts_user_add")
NEW_PASSWORD = "a-brand-new-Passphrase-42"


def _change_url(user):
    return reverse("admin:accounts_user_change", args=[user.pk])


@pytest.fixture
def superuser():
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_site(client, superuser):
    client.force_login(superuser)
    return client


def _change_form_data(user, **changes):
    data = {
        **NO_PREFERENCE_FORMS,
        "email": user.email,
        "name": user.name,
        "language": user.language,
        "timezone": user.timezone,
        "email_verified": "on" if user.email_verified else "",
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "groups": [],
        "user_permissions": [],
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_changelist_lists_the_users(admin_site):
    UserFactory(email="ada@example.com", name="Ada Lovelace")
    UserFactory(email="grace@example.com", name="Grace Hopper")

    response = admin_site.get(CHANGELIST)

    assert response.status_code == 200
    listed = {user.email for user in response.context["cl"].result_list}
    assert listed == {"root@example.com", "ada@example.com", "grace@example.com"}
    assert "Ada Lovelace" in response.text


def test_changelist_searches_by_email_and_name(admin_site):
    UserFactory(email="ada@example.com", name="Ada Lovelace")
    UserFactory(email="grace@example.com", name="Grace Hopper")

    by_email = admin_site.get(CHANGELIST, {"q": "grace@"})
    by_name = admin_site.get(CHANGELIST, {"q": "Lovelace"})

    assert [u.email for u in by_email.context["cl"].result_list] == ["grace@example.com"]
    assert [u.email for u in by_name.context["cl"].result_list] == ["ada@example.com"]


def test_changelist_filters_by_email_verified(admin_site):
    UserFactory(email="unverified@example.com", email_verified=False)

    response = admin_site.get(CHANGELIST, {"email_verified__exact": "0"})

    assert response.status_code == 200
    assert [u.email for u in response.context["cl"].result_list] == ["unverified@example.com"]


def test_add_page_asks_for_email_name_and_password(admin_site):
    response = admin_site.get(ADD)

    assert response.status_code == 200
    form = response.context["adminform"].form
    for field in ["email", "name", "password1", "password2"]:
        assert field in form.fields
        assert f'name="{field}"' in response.text
    assert 'name="username"' not in response.text


def test_add_form_creates_a_user_who_can_log_in(admin_site, client):
    response = admin_site.post(
        ADD,
        {
            "email": "New.Person@Example.com",
            "name": "New Person",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(email="new.person@example.com")
    assert response["Location"] == _change_url(user)
    assert user.name == "New Person"
    assert user.has_usable_password()
    assert user.check_password(NEW_PASSWORD)
    assert not user.is_staff
    assert services.log_in(email="new.person@example.com", password=NEW_PASSWORD)[0] == user


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password2": "a-different-Passphrase-43"}, "password2"),
        ({"password1": "password123", "password2": "password123"}, "password2"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "Taken@Example.com"}, "email"),
    ],
    ids=["passwords-differ", "common-password", "invalid-email", "email-taken-other-case"],
)
def test_add_form_refuses_bad_input(admin_site, changes, field):
    UserFactory(email="taken@example.com")
    data = {
        "email": "new@example.com",
        "name": "New",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        **changes,
    }
    users_before = User.objects.count()

    response = admin_site.post(ADD, data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert User.objects.count() == users_before


def test_change_page_shows_the_user_without_the_password_hash(admin_site):
    user = UserFactory(email="ada@example.com", name="Ada Lovelace")
    preferences.set_matrix(user, {"invoice_paid": {"email": "weekly"}})

    response = admin_site.get(_change_url(user))

    assert response.status_code == 200
    assert 'value="ada@example.com"' in response.text
    assert 'value="Ada Lovelace"' in response.text
    assert "Notification preferences they chose" in response.text
    assert "invoice_paid" in response.text and "weekly" in response.text
    hash_part = user.password.rsplit("$", 1)[-1]
    assert hash_part not in response.text


def test_change_form_updates_the_profile_and_keeps_the_password(admin_site):
    user = UserFactory(email="ada@example.com", name="Ada", email_verified=False)

    response = admin_site.post(
        _change_url(user),
        _change_form_data(user, name="Ada Lovelace", email_verified="on", is_staff="on"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.name == "Ada Lovelace"
    assert user.email_verified
    assert user.is_staff
    assert user.check_password(PASSWORD)


def test_change_form_stores_an_edited_email_lower_cased(admin_site):
    user = UserFactory(email="ada@example.com")

    response = admin_site.post(_change_url(user), _change_form_data(user, email="ADA@Example.ORG"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.email == "ada@example.org"


def test_change_form_refuses_the_email_of_another_user_in_any_case(admin_site):
    UserFactory(email="taken@example.com")
    user = UserFactory(email="ada@example.com")

    response = admin_site.post(
        _change_url(user), _change_form_data(user, email="TAKEN@example.com")
    )

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.email == "ada@example.com"


def test_admin_password_page_sets_a_new_password(admin_site):
    user = UserFactory()

    response = admin_site.post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_user_pages_are_closed_to_non_staff(client):
    client.force_login(UserFactory())

    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_token_changelist_shows_a_hash_prefix_and_never_the_key(admin_site, superuser):
    raw = services.create_auth_token(UserFactory(email="ada@example.com"))
    token = AuthToken.objects.get()

    response = admin_site.get(reverse("admin:accounts_authtoken_changelist"))

    assert response.status_code == 200
    assert "ada@example.com" in response.text
    assert token.key_hash[:8] in response.text
    assert token.key_hash not in response.text
    assert raw not in response.text


def test_tokens_cannot_be_added_or_edited_but_can_be_revoked(admin_site):
    services.create_auth_token(UserFactory())
    token = AuthToken.objects.get()

    assert admin_site.get(reverse("admin:accounts_authtoken_add")).status_code == 403
    change = admin_site.post(
        reverse("admin:accounts_authtoken_change", args=[token.pk]), {"user": token.user_id}
    )
    assert change.status_code == 403
    delete = admin_site.post(
        reverse("admin:accounts_authtoken_delete", args=[token.pk]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert not AuthToken.objects.exists()
