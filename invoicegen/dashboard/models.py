"""Audit entries counted per past day, so that the dashboard reads a few thousand counts
rather than a month of the trail. The trail is append-only, so a day's counts never change
once the day is over (retention deletes entries far older than the dashboard shows)."""

from django.db import models
from django.db.models.functions import Now


class AuditDay(models.Model):
    """A day of the time zone `zone`, counted: its counts are complete (none for a day without
    entries). Another zone's days are other days: a changed TIME_ZONE counts again."""

    zone = models.CharField(max_length=64)
    day = models.DateField()
    counted_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["zone", "day"], name="audit_day_once")]

    def __str__(self):
        return f"{self.day} ({self.zone})"


class AuditDayCount(models.Model):
    """How many entries of one action (and the category it was recorded under) a day had."""

    audit_day = models.ForeignKey(AuditDay, on_delete=models.CASCADE, related_name="counts")
    category = models.CharField(max_length=32)
    action = models.CharField(max_length=100)
    entries = models.PositiveIntegerField()

    def __str__(self):
        return f"{self.audit_day}: {self.entries} {self.action}"
