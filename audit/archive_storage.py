"""The audit archive in an S3-compatible bucket (settings: AUDIT_ARCHIVE_S3_*)."""

import datetime
from functools import cached_property

from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.utils import timezone
from storages.backends.s3 import S3Storage


class ArchiveS3Storage(S3Storage):
    """django-storages' S3 storage whose calls end within AUDIT_ARCHIVE_S3_TIMEOUT, and whose
    files are locked for AUDIT_ARCHIVE_LOCK_DAYS where the bucket has Object Lock."""

    def __init__(self, **options):
        timeout = settings.AUDIT_ARCHIVE_S3_TIMEOUT
        options.setdefault(
            "client_config",
            Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"} if options.get("endpoint_url") else None,
            ),
        )
        super().__init__(**options)

    @cached_property
    def lock_mode(self) -> str | None:
        """The bucket's Object Lock retention mode (COMPLIANCE unless its default rule says
        GOVERNANCE), or None when it has no Object Lock."""
        client = self.connection.meta.client
        try:
            found = client.get_object_lock_configuration(Bucket=self.bucket_name)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ObjectLockConfigurationNotFoundError":
                return None
            raise
        configuration = found["ObjectLockConfiguration"]
        if configuration.get("ObjectLockEnabled") != "Enabled":
            return None
        return configuration.get("Rule", {}).get("DefaultRetention", {}).get("Mode", "COMPLIANCE")

    def get_object_parameters(self, name):
        parameters = {
            **super().get_object_parameters(name),
            "ContentType": "application/octet-stream",
        }
        if name.endswith(".json"):
            parameters["ContentType"] = "application/json"
        if self.lock_mode:
            until = timezone.now() + datetime.timedelta(days=settings.AUDIT_ARCHIVE_LOCK_DAYS)
            parameters |= {"ObjectLockMode": self.lock_mode, "ObjectLockRetainUntilDate": until}
        return parameters
