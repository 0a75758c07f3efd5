from django.urls import reverse

from audit import context as audit_context


class AuditContextMiddleware:
    """Binds the audit context (client IP, user agent, path, request id) for the request and
    echoes the request id back in `X-Request-ID`."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.admin_prefix = None

    def _origin(self, path: str) -> str:
        if self.admin_prefix is None:
            self.admin_prefix = reverse("admin:index")
        if path.startswith(self.admin_prefix):
            return "admin"
        return "api" if path.startswith("/api/") else "web"

    def __call__(self, request):
        context = audit_context.from_request(request, origin=self._origin(request.path_info))
        request.request_id = context.request_id  # for what is logged after the answer
        with audit_context.bind(context):
            response = self.get_response(request)
        response["X-Request-ID"] = context.request_id
        return response
