"""PostgreSQL: the entries table partitioned by month, its rows kept in place (audit/partitions.py).
SQLite keeps one table."""

from django.db import migrations

from audit import partitions


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_resource_label")]
    operations = [migrations.RunPython(partitions.partition, partitions.unpartition)]
