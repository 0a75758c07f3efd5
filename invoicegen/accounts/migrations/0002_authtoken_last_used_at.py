import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """Existing tokens count as used now: their users are not logged out by the deploy, and a
    token nobody presents again expires AUTH_TOKEN_TTL_DAYS later."""

    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="authtoken",
            name="last_used_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
    ]
