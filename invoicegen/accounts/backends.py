from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.core.exceptions import PermissionDenied

from audit import security
from invoicegen.accounts.models import User


class LockoutBackend(ModelBackend):
    """Django's ModelBackend, refusing every login to a locked-out email before its password
    is checked: the right password does not lift a lockout. Both the API login and the admin
    login go through authenticate(), hence through here. PermissionDenied stops authenticate()
    (no other backend is tried) and still fires user_login_failed, which the trail records as
    `user.login_locked`."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        email = kwargs.get(User.USERNAME_FIELD, username)
        if email is not None and security.lockout_ends(email) is not None:
            raise PermissionDenied("Too many failed logins for this account.")
        return super().authenticate(request, username, password, **kwargs)

    # ModelBackend's own async path would skip the check above.
    aauthenticate = BaseBackend.aauthenticate
