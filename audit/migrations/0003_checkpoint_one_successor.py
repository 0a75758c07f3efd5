from django.db import migrations, models

from audit import triggers


def reinstall_triggers(apps, schema_editor):
    """SQLite adds a constraint by making the table anew, which drops its triggers."""
    vendor = schema_editor.connection.vendor
    for sql in [*triggers.uninstall_sql(vendor), *triggers.install_sql(vendor)]:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, reinstall_triggers),  # after unapplying
        migrations.AddConstraint(
            model_name="checkpoint",
            constraint=models.UniqueConstraint(
                fields=("previous_digest",), name="checkpoint_one_successor"
            ),
        ),
        migrations.RunPython(reinstall_triggers, migrations.RunPython.noop),
    ]
