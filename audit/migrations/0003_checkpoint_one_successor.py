from django.db import migrations, models

from audit import triggers


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, triggers.reinstall),  # after unapplying
        migrations.AddConstraint(
            model_name="checkpoint",
            constraint=models.UniqueConstraint(
                fields=("previous_digest",), name="checkpoint_one_successor"
            ),
        ),
        migrations.RunPython(triggers.reinstall, migrations.RunPython.noop),
    ]
