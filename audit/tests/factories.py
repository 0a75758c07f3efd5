import factory

from audit import context as audit_context
from audit import services
from audit.models import AuditLog


class AuditLogFactory(factory.django.DjangoModelFactory):
    """An entry written the only way entries are written: through `services.log()`, so its
    digest is the real one. `target` is a (type, id) pair; `context` an AuditContext."""

    class Meta:
        model = AuditLog

    action = "invoice.updated"
    target = factory.Sequence(lambda n: ("invoice", n + 1))
    metadata = factory.LazyFunction(dict)
    success = True
    context = factory.LazyFunction(audit_context.AuditContext)

    @classmethod
    def _create(cls, model_class, action, **fields):
        return services.log(action, **fields)


def request_context(**fields) -> audit_context.AuditContext:
    """The context the middleware would bind for an API request."""
    defaults = {
        "ip_address": "203.0.113.10",
        "user_agent": "pytest-agent/1.0",
        "method": "POST",
        "path": "/api/invoices/",
        "request_id": "req-factory",
        "origin": "api",
    }
    return audit_context.AuditContext(**{**defaults, **fields})
