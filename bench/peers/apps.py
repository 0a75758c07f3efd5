from django.apps import AppConfig


class PeersConfig(AppConfig):
    name = "bench.peers"
    label = "peers"
    verbose_name = "Benchmark peers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Every peer starts off in every process (gunicorn and Celery workers too): the bench
        # switches on the one it measures (bench/capture.py).
        from bench import capture

        capture.simple_history(False)
