import hashlib
import zoneinfo
from functools import cache

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from audit.tracking import Audited, AuditedQuerySet


def normalize_email(email: str) -> str:
    """Emails are stored lower-cased so that `A@x.com` and `a@x.com` are one account."""
    return (email or "").strip().lower()


@cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(name: str) -> None:
    if name not in time_zones():
        raise ValidationError(
            "Not a time zone of the IANA database (like Europe/Paris).", code="invalid"
        )


class UserManager(BaseUserManager.from_queryset(AuditedQuerySet)):
    use_in_migrations = True

    def get_by_natural_key(self, email):
        return self.get(email=normalize_email(email))

    def create_user(self, email, password=None, **extra_fields):
        if not email:
            raise ValueError("An email is required.")
        user = self.model(email=normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.update(is_staff=True, is_superuser=True, email_verified=True)
        return self.create_user(email, password, **extra_fields)


class User(Audited, AbstractBaseUser, PermissionsMixin):
    """An account: the email is the login. What reaches the user speaks their `language` and
    tells the time in their `timezone` (the digests go at 08:00 there)."""

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        GERMAN = "de", "Deutsch"
        FRENCH = "fr", "Français"
        SPANISH = "es", "Español"

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    email_verified = models.BooleanField(default=False)
    is_staff = models.BooleanField(
        default=False, help_text="Designates whether the user can log into the admin site."
    )
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Defaults in the database too: code that predates the columns (a process of the previous
    # release during a deploy) still adds users.
    language = models.CharField(
        max_length=8, choices=Language, default=Language.ENGLISH, db_default=Language.ENGLISH
    )
    # Last: a field of this name hides the timezone module from the rest of the class body.
    timezone = models.CharField(
        max_length=64, default="UTC", db_default="UTC", validators=[validate_time_zone]
    )

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = normalize_email(self.email)

    def get_full_name(self):
        return self.name or self.email

    def get_short_name(self):
        return self.name or self.email


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class AuthToken(models.Model):
    """An API token. Only its SHA-256 is stored: the raw key is shown once, at login. It
    expires when unused for AUTH_TOKEN_TTL_DAYS (services.use_auth_token)."""

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    # Renewed at most every few minutes, not on every request.
    last_used_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"token {self.key_hash[:8]}… of {self.user}"
