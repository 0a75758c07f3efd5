from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from invoicegen.accounts import services
from invoicegen.accounts.models import AuthToken, hash_token


class HashedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, looked up by the key's hash: a leaked database holds no
    usable token. A token unused for AUTH_TOKEN_TTL_DAYS is refused and deleted; each use
    renews it."""

    model = AuthToken

    def authenticate_credentials(self, key):
        token = AuthToken.objects.select_related("user").filter(key_hash=hash_token(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if services.use_auth_token(token) is None:
            raise exceptions.AuthenticationFailed(_("Token expired."))
        return token.user, token
