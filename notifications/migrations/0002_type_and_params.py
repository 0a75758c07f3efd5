"""A notification stores its type and parameters; its title and body are rendered from them.
Rows stored before keep their text, as the parameters `title` and `message`, which a type
whose templates their parameters cannot fill renders instead (notifications/types.py)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def keep_stored_text(apps, schema_editor):
    Notification = apps.get_model("notifications", "Notification")
    rows = Notification.objects.only("pk", "title", "message", "params").iterator(chunk_size=2000)
    batch = []
    for row in rows:
        row.params = {**row.params, "title": row.title, "message": row.message}
        batch.append(row)
        if len(batch) == 2000:
            Notification.objects.bulk_update(batch, ["params"])
            batch = []
    Notification.objects.bulk_update(batch, ["params"])


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField("notification", "metadata", "params"),
        migrations.RunPython(keep_stored_text, migrations.RunPython.noop),
        migrations.RemoveField("notification", "title"),
        migrations.RemoveField("notification", "message"),
        migrations.AlterField(
            model_name="notification", name="type", field=models.CharField(max_length=64)
        ),
        migrations.AddField(
            model_name="notification",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
