"""Signal receivers: the only listeners in the project, and only for the audit trail.

Connected in AuditConfig.ready() with a sender and a dispatch_uid each.
"""

from celery import signals as celery_signals
from django.contrib.auth import signals as auth_signals
from django.db.backends.signals import connection_created
from django.db.models import signals as model_signals

from audit import context as audit_context
from audit import piggyback, services, tracking


def expect_update(sender, instance, raw=False, using=None, update_fields=None, **kwargs):
    """Outside a service's transaction, the entry may ride along with the UPDATE itself."""
    if not raw and not instance._state.adding and tracking.collecting() is None:
        piggyback.expect(instance, update_fields, using=using)


def record_save(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:  # loaddata: fixtures are not actions
        return
    if created:
        instance._audit_snapshot = tracking.snapshot(instance)
        tracking.capture(instance, "created", tracking.created_changes(instance))
        return
    written = piggyback.written(instance)  # the entry rode along with the UPDATE
    if written is not None:
        instance._audit_snapshot = written
        return
    old = tracking.old_values(instance)
    instance._audit_snapshot = tracking.saved_values(instance, update_fields)
    tracking.capture(instance, "updated", tracking.diff(sender, old, instance._audit_snapshot))


def record_delete(sender, instance, **kwargs):
    tracking.capture(instance, "deleted", {})


def connect_model_receivers(model) -> None:
    uid = f"audit.{model._meta.label}"
    model_signals.pre_save.connect(expect_update, sender=model, dispatch_uid=f"{uid}.pre")
    model_signals.post_save.connect(record_save, sender=model, dispatch_uid=f"{uid}.save")
    model_signals.post_delete.connect(record_delete, sender=model, dispatch_uid=f"{uid}.delete")


def record_login(sender, request, user, **kwargs):
    services.log("user.login", target=user, actor=user)


def record_logout(sender, request, user, **kwargs):
    if user is not None:
        services.log("user.logout", target=user, actor=user)


def record_login_failure(sender, credentials, request=None, **kwargs):
    from audit.security import record_failed_login

    record_failed_login(attempted_email=credentials.get("email") or credentials.get("username"))


def install_piggyback(sender, connection, **kwargs):
    """connection_created fires on every reconnect of the same long-lived connection object
    (each Celery task, each request with CONN_MAX_AGE=0): install the wrapper only once."""
    wrappers = connection.execute_wrappers
    if connection.vendor == "postgresql" and piggyback.attach_entry not in wrappers:
        wrappers.append(piggyback.attach_entry)


def connect_connection_receivers():
    connection_created.connect(install_piggyback, dispatch_uid="audit.piggyback")


def connect_auth_receivers():
    auth_signals.user_logged_in.connect(record_login, dispatch_uid="audit.user_logged_in")
    auth_signals.user_logged_out.connect(record_logout, dispatch_uid="audit.user_logged_out")
    auth_signals.user_login_failed.connect(
        record_login_failure, dispatch_uid="audit.user_login_failed"
    )


# Celery: the context of whoever queued a task travels in its headers to the worker.
_HEADER = "audit_context"
_bound_tasks = {}


def add_context_header(headers=None, **kwargs):
    if headers is not None:
        headers[_HEADER] = audit_context.current().to_headers()


def bind_task_context(task_id=None, task=None, **kwargs):
    values = getattr(task.request, _HEADER, None)
    if values is None:  # run in process (eager): the caller's context is already current
        return
    _bound_tasks[task_id] = audit_context._current.set(
        audit_context.from_headers(values, origin="task")
    )


def unbind_task_context(task_id=None, **kwargs):
    token = _bound_tasks.pop(task_id, None)
    if token is not None:
        audit_context._current.reset(token)


def connect_task_receivers():
    celery_signals.before_task_publish.connect(add_context_header, dispatch_uid="audit.publish")
    celery_signals.task_prerun.connect(bind_task_context, dispatch_uid="audit.prerun")
    celery_signals.task_postrun.connect(unbind_task_context, dispatch_uid="audit.postrun")
