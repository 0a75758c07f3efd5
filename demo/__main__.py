import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "invoicegen.settings")

if __name__ == "__main__":
    import django

    django.setup()
    from demo.story import Story

    Story(sys.stdout).tell_all()
