"""The audit trail. Rows are append-only: database triggers (migration 0002) refuse UPDATE,
DELETE and TRUNCATE, except the retention cleanup's DELETE inside a transaction that holds a
RetentionGrant. Each AuditLog row carries an HMAC of its content; Checkpoints chain them."""

from django.conf import settings
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import F, Func, Q, TextField
from django.db.models.functions import Now, Upper


class Origin(models.TextChoices):
    API = "api"
    WEB = "web"
    ADMIN = "admin"
    COMMAND = "command"
    TASK = "task"
    SYSTEM = "system"


class PatternOps(OpClass):
    """An indexed expression whose `LIKE 'prefix%'` can use the index on PostgreSQL whatever the
    database's collation (text_pattern_ops); other databases have no operator classes and index
    the plain expression. Like any OpClass, it must stay outside the parentheses that an index
    puts around an expression (AuditConfig.ready() says so where django.contrib.postgres does
    not)."""

    def __init__(self, expression):
        super().__init__(expression, name="text_pattern_ops")

    def as_sqlite(self, compiler, connection, **extra_context):
        return compiler.compile(self.get_source_expressions()[0])


class Host(Func):
    """An address as the text that `ip_address__startswith` compares on PostgreSQL (host() of
    the inet column); other databases store that text."""

    function = "HOST"
    output_field = TextField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return compiler.compile(self.get_source_expressions()[0])


class EntryQuerySet(models.QuerySet):
    """Entries read as model instances show their personal data, or `[erased]`
    (audit/subjects.py reveal()): one more query per page, for the keys. Values and value lists
    are what is stored, as the digests cover it."""

    def _fetch_all(self):
        revealed = self._result_cache is None and self._iterable_class is models.query.ModelIterable
        super()._fetch_all()
        if revealed:
            from audit.subjects import reveal

            reveal(self._result_cache)


class AuditLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=100)
    category = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    # The actor survives their deletion: no FK constraint, and an email snapshot.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # audit_user_id below serves it, newest first
        related_name="+",
    )
    user_email = models.CharField(max_length=254, blank=True)
    resource_type = models.CharField(max_length=50, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    # The resource's label when the entry was written (a document's number, a user's email),
    # for the admin's search; "" in entries older than the column and about unlabelled targets.
    resource_label = models.CharField(max_length=200, blank=True, default="", db_default="")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    success = models.BooleanField(default=True)
    # Where the action came from; never part of its name ("" in entries older than the column).
    origin = models.CharField(max_length=10, choices=Origin, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    digest = models.CharField(max_length=64)
    # Personal data under the key of the person it is about (audit/subjects.py): the columns
    # above then hold none of it, and keyed hashes of the actor's email and address find the
    # entry. "" in entries without it, and in those older than these columns.
    sealed = models.TextField(blank=True, default="", db_default="")
    email_hash = models.CharField(max_length=32, blank=True, default="", db_default="")
    ip_hash = models.CharField(max_length=32, blank=True, default="", db_default="")

    objects = EntryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        base_manager_name = "objects"  # refresh_from_db() reveals too
        permissions = [
            ("export_auditlog", "Can export audit entries"),
            ("prune_auditlog", "Can delete audit entries past retention"),
        ]
        indexes = [
            # Lists are newest first by id (cursor pagination); each API filter has its index,
            # and no more: every index is paid for on every audited write.
            # Pattern ops (PostgreSQL) serve the prefix filter (`user.`) as well as equality.
            models.Index(
                fields=["action", "-id"],
                opclasses=["varchar_pattern_ops", "int8_ops"],
                name="audit_action_id",
            ),
            models.Index(fields=["user", "-id"], name="audit_user_id"),
            models.Index(fields=["resource_type", "resource_id", "-id"], name="audit_resource_id"),
            models.Index(fields=["ip_address", "-id"], name="audit_ip_id"),
            # The admin's search, by the start of an email, a label or an address, in any case
            # (`__istartswith` compares UPPER(column) on PostgreSQL, `__startswith` on an inet
            # column host(column)).
            models.Index(PatternOps(Upper("user_email")), name="audit_email_prefix"),
            models.Index(PatternOps(Upper("resource_label")), name="audit_label_prefix"),
            models.Index(PatternOps(Host("ip_address")), name="audit_ip_prefix"),
            models.Index(
                fields=["email_hash", "-id"], condition=~Q(email_hash=""), name="audit_email_hash"
            ),
            models.Index(fields=["ip_hash", "-id"], condition=~Q(ip_hash=""), name="audit_ip_hash"),
            models.Index(fields=["created_at"], name="audit_created_at"),
            models.Index(fields=["-id"], condition=Q(success=False), name="audit_failures_id"),
            # The rarer origins (the admin, commands, tasks): the API's many writes pay nothing,
            # and entries older than the column are not in it.
            models.Index(
                fields=["origin", "-id"],
                condition=~Q(origin__in=["api", ""]),
                name="audit_origin_id",
            ),
        ]

    def __str__(self):
        return f"#{self.id} {self.action}"


class AdminAction(models.Model):
    """Who did what to which object through the Django admin or the staff API."""

    class Kind(models.TextChoices):
        ADD = "add"
        CHANGE = "change"
        DELETE = "delete"
        BULK_ACTION = "bulk_action"
        TOOL = "tool"  # an admin screen of its own, such as the audit cleanup
        API = "api"

    id = models.BigAutoField(primary_key=True)
    admin = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # adminaction_admin_id below serves it, newest first
        related_name="+",
    )
    admin_email = models.CharField(max_length=254, blank=True)
    kind = models.CharField(max_length=20, choices=Kind)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["admin", "-id"], name="adminaction_admin_id"),
            models.Index(fields=["target_type", "target_id", "-id"], name="adminaction_target_id"),
            models.Index(fields=["created_at"], name="adminaction_created_at"),
        ]

    def __str__(self):
        return f"{self.admin_email} {self.action} {self.target_repr}"


class Checkpoint(models.Model):
    """A seal over the AuditLog rows first_id..last_id: `rows_hash` hashes their (id, time,
    digest) in id order, and `digest` is the HMAC of this checkpoint chained to the previous
    one's, so a removed, added or altered sealed row, or a forged checkpoint, breaks the chain."""

    id = models.BigAutoField(primary_key=True)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField(unique=True)
    row_count = models.PositiveIntegerField()
    rows_hash = models.CharField(max_length=64)
    previous_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_default=Now())
    # Where the range lies in time, for lists by date (audit/api/filters.py); written by the
    # seal, and null in checkpoints older than these columns. `oldest_at`: the oldest entry of
    # the range. `newest_at`: the newest entry through last_id, earlier ranges included, so it
    # never decreases. `max_lag`: the greatest newest_at - oldest_at of this checkpoint and
    # every one before it.
    oldest_at = models.DateTimeField(null=True)
    newest_at = models.DateTimeField(null=True)
    max_lag = models.DurationField(null=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["newest_at", "last_id"], name="checkpoint_newest_at")]
        constraints = [
            # A chain has no forks: two sealers racing both chain to the latest checkpoint,
            # and only one of them may add its successor.
            models.UniqueConstraint(fields=["previous_digest"], name="checkpoint_one_successor")
        ]

    def __str__(self):
        return f"checkpoint {self.first_id}..{self.last_id}"


class RetentionGrant(models.Model):
    """A permit the triggers look for before letting audit rows be deleted: the retention
    cleanup writes one and removes it inside each of its own transactions (on PostgreSQL the
    permit names that transaction). What was purged is recorded as `audit.purged` entries."""

    transaction_id = models.BigIntegerField(null=True)

    def __str__(self):
        return f"retention grant {self.transaction_id}"


class Archive(models.Model):
    """A month of entries written to the archive storage (audit/archive.py), read back and
    verified before it was recorded: what the retention cleanup requires before any of the
    month's entries leave the database."""

    month = models.DateField(unique=True)  # its first day
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    row_count = models.BigIntegerField()
    manifest = models.CharField(max_length=200)  # its name in the archive storage
    manifest_sha256 = models.CharField(max_length=64)  # the next month's manifest chains to it
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["month"]

    def __str__(self):
        return f"audit archive {self.month:%Y-%m}"


class LegalHold(models.Model):
    """Entries kept whatever their retention, and never erased: those that match every
    criterion the hold names (a user, a resource, a category, a time range; none names the
    whole trail). Released holds stay, as the record of what was held and why."""

    reason = models.TextField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,  # a hold outlives the account it is about
        related_name="+",
    )
    resource_type = models.CharField(max_length=50, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    category = models.CharField(max_length=32, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    placed_by_email = models.CharField(max_length=254)
    placed_at = models.DateTimeField(db_default=Now())
    released_by_email = models.CharField(max_length=254, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["-id"], condition=Q(released_at=None), name="legalhold_active")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at=None) | Q(ends_at=None) | Q(ends_at__gt=F("starts_at")),
                name="legalhold_range_forward",
            ),
            models.CheckConstraint(
                condition=Q(resource_id="") | ~Q(resource_type=""),
                name="legalhold_resource_has_type",
            ),
        ]

    def __str__(self):
        return f"legal hold #{self.pk}"

    def _named(self) -> dict:
        """The fields it names, with their values."""
        fields = ("user_id", "resource_type", "resource_id", "category")
        named = {field: getattr(self, field) for field in fields}
        return {field: value for field, value in named.items() if value not in (None, "")}

    def entries(self) -> Q:
        """The entries it holds."""
        given = self._named()
        if self.starts_at is not None:
            given["created_at__gte"] = self.starts_at
        if self.ends_at is not None:
            given["created_at__lt"] = self.ends_at
        return Q(**given) if given else Q(pk__isnull=False)  # Q() would vanish in an OR

    def holds(self, entry: dict) -> bool:
        """Whether it holds an entry given as values (an archived one): entries() in Python."""
        return (
            all(entry[field] == value for field, value in self._named().items())
            and (self.starts_at is None or entry["created_at"] >= self.starts_at)
            and (self.ends_at is None or entry["created_at"] < self.ends_at)
        )


class VerificationRun(models.Model):
    """A verification of the trail month by month (audit/verification.py): interrupted, it
    continues with the months it has not checked."""

    started_at = models.DateTimeField(db_default=Now())
    since = models.DateField(null=True, blank=True)  # its first month; None: the whole trail
    # The last id sealed when it began: checkpoints sealed since are not expected in months it
    # checked before them.
    head = models.BigIntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"audit verification #{self.pk}"


class VerifiedMonth(models.Model):
    """One month's outcome in a verification run."""

    run = models.ForeignKey(VerificationRun, on_delete=models.CASCADE, related_name="months")
    month = models.DateField()
    rows = models.BigIntegerField()  # entries checked: in the database, or archived only
    first_bad_id = models.BigIntegerField(null=True)
    # Id ranges ([first, last]) of the checkpoints whose rows are all the month's, and good.
    covered = models.JSONField(default=list)
    # Last ids of checkpoints with rows here and elsewhere (or gone): checked after the months.
    seams = models.JSONField(default=list)
    problems = models.JSONField(default=list)

    class Meta:
        ordering = ["month"]
        constraints = [
            models.UniqueConstraint(fields=["run", "month"], name="verifiedmonth_once_per_run")
        ]

    def __str__(self):
        return f"{self.month:%Y-%m} of {self.run}"


class SubjectKey(models.Model):
    """The key a person's data in the trail is sealed under (audit/subjects.py), itself sealed
    under a key derived from AUDIT_HMAC_KEY. Erasing the person destroys it: their entries keep
    their ciphertext, and so their digests, but no one can read it again. The row stays as the
    record of the erasure; a person erased who acts again gets a new key."""

    subject = models.BigIntegerField()  # a user's id: no FK, the record outlives the account
    wrapped = models.BinaryField(null=True)  # None once erased
    created_at = models.DateTimeField(db_default=Now())
    erased_at = models.DateTimeField(null=True, blank=True)
    erased_by_email = models.CharField(max_length=254, blank=True)
    basis = models.TextField(blank=True)  # why: the request or the law it answers

    class Meta:
        ordering = ["-id"]
        permissions = [("erase_subject", "Can erase a person's data in the audit trail")]
        constraints = [
            models.UniqueConstraint(
                fields=["subject"], condition=Q(erased_at=None), name="subjectkey_one_live"
            ),
            models.CheckConstraint(
                condition=Q(erased_at=None, wrapped__isnull=False)
                | Q(erased_at__isnull=False, wrapped=None),
                name="subjectkey_erased_has_no_key",
            ),
        ]

    def __str__(self):
        return f"key #{self.pk} of subject {self.subject}"
