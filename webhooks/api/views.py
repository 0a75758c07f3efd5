from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, throttling, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.api.views import NewestFirstCursor
from invoicegen.core.api import FailOpen
from invoicegen.core.schema import CONFLICT
from webhooks import services, types
from webhooks.api import serializers
from webhooks.models import WebhookEndpoint


class WebhookActionThrottle(FailOpen, throttling.UserRateThrottle):
    scope = "webhook_action"


@extend_schema_view(
    list=extend_schema(operation_id="listWebhookEndpoints"),
    retrieve=extend_schema(operation_id="getWebhookEndpoint"),
)
class EndpointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's webhook endpoints: where their events are POSTed, signed as Standard
    Webhooks say (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

    queryset = WebhookEndpoint.objects.order_by("id")
    serializer_class = serializers.EndpointSerializer
    lookup_value_regex = "[0-9]+"  # ASCII digits (\d takes every script's)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return super().get_queryset().filter(user=self.request.user)

    def get_throttles(self):
        """Every change is audited, and a replay, a recovery or a test event makes requests
        to the endpoint: they share one rate (WEBHOOK_ACTION_THROTTLE_RATE)."""
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return super().get_throttles()
        return [*super().get_throttles(), WebhookActionThrottle()]

    @extend_schema(
        operation_id="createWebhookEndpoint",
        request=serializers.EndpointInputSerializer,
        responses={201: serializers.EndpointWithSecretSerializer, 409: CONFLICT},
        description="409: the account has WEBHOOK_MAX_ENDPOINTS endpoints already.",
    )
    def create(self, request):
        data = serializers.EndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.create_endpoint(
            request.user, **data.validated_data, actor=request.user
        )
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="updateWebhookEndpoint",
        request=serializers.EndpointInputSerializer,
        responses={200: serializers.EndpointSerializer},
    )
    def partial_update(self, request, pk=None):
        endpoint = self.get_object()
        data = serializers.EndpointInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.update_endpoint(endpoint, **data.validated_data, actor=request.user)
        return Response(self.get_serializer(endpoint).data)

    @extend_schema(operation_id="deleteWebhookEndpoint")
    def destroy(self, request, pk=None):
        services.delete_endpoint(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="rotateWebhookSecret",
        request=None,
        responses={200: serializers.EndpointWithSecretSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="rotate-secret",
    )
    def rotate_secret(self, request, pk=None):
        """A new secret, shown this once. The previous one keeps signing beside it (both
        signatures in `webhook-signature`) until `secret_rotation_ends_at`, 24 h."""
        endpoint = self.get_object()
        secret = services.rotate_secret(endpoint, actor=request.user)
        endpoint.refresh_from_db()
        return Response(_with_secret(endpoint, secret))

    @extend_schema(
        operation_id="sendTestWebhook",
        request=None,
        responses={201: serializers.DeliverySerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `webhook.test` event to this endpoint alone, whatever it subscribes to; its
        delivery is answered, and its attempts show in `deliveries/`."""
        delivery = services.send_test_event(self.get_object())
        return Response(serializers.DeliverySerializer(delivery).data, status=201)

    @extend_schema(
        operation_id="recoverWebhookDeliveries",
        request=serializers.RecoverSerializer,
        responses={200: serializers.RecoveredSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def recover(self, request, pk=None):
        """Send again the deliveries that failed (every attempt used up) since `since` and
        were not replayed yet, oldest first, each as a replay (same `webhook-id` and body): what
        an outage of the receiver lost. At most 500 a call; `more` says to call again."""
        endpoint = self.get_object()
        data = serializers.RecoverSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        since = data.validated_data["since"]
        return Response(services.recover_failed(endpoint, since=since, actor=request.user))

    @extend_schema(
        operation_id="listWebhookDeliveries",
        responses={200: serializers.DeliverySerializer(many=True)},
    )
    @action(detail=True, pagination_class=NewestFirstCursor)
    def deliveries(self, request, pk=None):
        """The endpoint's deliveries, newest first, each with its attempts."""
        deliveries = self.get_object().deliveries.prefetch_related("attempt_log")
        page = self.paginate_queryset(deliveries)
        data = serializers.DeliverySerializer(page, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="replayWebhookDelivery",
        request=None,
        responses={201: serializers.DeliverySerializer, 409: CONFLICT},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"deliveries/(?P<delivery_id>[0-9]+)/replay",
    )
    def replay(self, request, pk=None, delivery_id=None):
        """Send a delivery's message again: a new delivery, with the same `webhook-id` and
        body."""
        delivery = get_object_or_404(self.get_object().deliveries, pk=delivery_id)
        replay = services.replay_delivery(delivery, actor=request.user)
        return Response(serializers.DeliverySerializer(replay).data, status=201)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict:
    return {**serializers.EndpointSerializer(endpoint).data, "secret": secret}


class EventTypeViewSet(viewsets.GenericViewSet):
    """The events an endpoint may subscribe to."""

    serializer_class = serializers.EventTypeSerializer
    pagination_class = None
    filter_backends = []

    @extend_schema(
        operation_id="listWebhookEventTypes",
        responses=serializers.EventTypeSerializer(many=True),
    )
    def list(self, request):
        rows = [{"name": k, "description": v} for k, v in types.registered().items()]
        return Response(self.get_serializer(rows, many=True).data)
