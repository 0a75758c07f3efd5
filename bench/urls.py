"""The product's URLs plus a trivial endpoint to measure the framework's own cost against."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from invoicegen.urls import urlpatterns as product_urls


class Ping(APIView):
    """Authenticated like every endpoint, and does nothing else."""

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("bench/ping/", Ping.as_view()), *product_urls]
