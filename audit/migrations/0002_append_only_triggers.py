from django.db import migrations

from audit import triggers


def install(apps, schema_editor):
    connection = schema_editor.connection
    for sql in triggers.install_sql(connection.vendor, triggers.existing_tables(connection)):
        schema_editor.execute(sql, params=None)


def uninstall(apps, schema_editor):
    for sql in triggers.uninstall_sql(schema_editor.connection.vendor):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
