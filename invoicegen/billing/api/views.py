import json

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, pagination, renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from downloads import services as downloads
from downloads.models import SecureDownloadToken
from invoicegen.billing import services, timeline
from invoicegen.billing.api import filters, serializers
from invoicegen.billing.models import Invoice, Subscription
from invoicegen.billing.pdf import render_invoice_pdf
from invoicegen.core.api import BoundedPageSize, refuse_unknown_parameters
from invoicegen.core.schema import (
    CONFLICT,
    INCOMPLETE,
    NOT_FOUND,
    ErrorSerializer,
    QuotaErrorSerializer,
)


class PDFRenderer(renderers.BaseRenderer):
    """Lets a client ask for `Accept: application/pdf`; an error answer is still JSON."""

    media_type = "application/pdf"
    format = "pdf"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        renderer_context["response"]["Content-Type"] = "application/json"
        return json.dumps(data).encode()


class TimelineCursor(BoundedPageSize, pagination.CursorPagination):
    """DRF's cursor pages over an invoice's timeline, whose positions (time, source, id) span
    the three tables it is read from (timeline.py)."""

    def paginate_timeline(self, invoice: Invoice, request, view) -> list[dict]:
        refuse_unknown_parameters(request, view)
        self.base_url = request.build_absolute_uri()
        self.page_size = self.get_page_size(request)
        cursor = self.decode_cursor(request)
        position = None
        if cursor is not None and cursor.position is not None:
            try:
                position = timeline.Position.parse(cursor.position)
            except ValueError:
                raise NotFound(self.invalid_cursor_message) from None
        backwards = cursor is not None and cursor.reverse and position is not None
        self.page = timeline.timeline_page(
            invoice,
            size=self.page_size,
            after=None if backwards else position,
            before=position if backwards else None,
        )
        return self.page.items

    def _link(self, position, *, reverse: bool):
        cursor = pagination.Cursor(offset=0, reverse=reverse, position=position.text())
        return self.encode_cursor(cursor)

    def get_next_link(self):
        page = self.page
        return self._link(page.last, reverse=False) if page.more_after and page.last else None

    def get_previous_link(self):
        page = self.page
        return self._link(page.first, reverse=True) if page.more_before and page.first else None


@extend_schema_view(
    list=extend_schema(operation_id="listInvoices"),
    retrieve=extend_schema(operation_id="getInvoice"),
)
class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Invoice.objects.all()
    serializer_class = serializers.InvoiceSerializer
    filterset_class = filters.InvoiceFilter
    lookup_value_regex = "[0-9]+"  # ASCII digits (\d takes every script's)

    def get_queryset(self):
        invoices = super().get_queryset().filter(user=self.request.user)
        invoices = invoices.annotate(delivery_status=timeline.latest_delivery_status())
        if self.action == "list":  # rows of plain values: an instance per row costs a page more
            return invoices.values_list(*serializers.LIST_COLUMNS, named=True)
        return invoices

    def _answer(self, invoice: Invoice, code=status.HTTP_200_OK) -> Response:
        invoice = self.get_queryset().get(pk=invoice.pk)
        return Response(serializers.InvoiceSerializer(invoice).data, status=code)

    @extend_schema(
        operation_id="createInvoice",
        request=serializers.InvoiceInputSerializer,
        responses={201: serializers.InvoiceSerializer},
    )
    def create(self, request):
        data = serializers.InvoiceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = services.create_invoice(request.user, **data.validated_data, actor=request.user)
        return self._answer(invoice, status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="updateInvoice",
        request=serializers.InvoiceInputSerializer,
        responses={200: serializers.InvoiceSerializer, 409: CONFLICT},
        description="Edit a draft (409 otherwise). `reminders_enabled` alone may also change on "
        "a finalized or sent invoice; on a paid or void one it is a 409.",
    )
    def partial_update(self, request, pk=None):
        invoice = self.get_object()
        data = serializers.InvoiceInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return self._answer(
            services.update_invoice(invoice, **data.validated_data, actor=request.user)
        )

    @extend_schema(
        operation_id="deleteInvoice",
        responses={204: None, 409: CONFLICT},
        description="Delete a draft; the drafts numbered after it move down one, so the "
        "year's numbers stay gap-free. Not a draft, or one with an issued invoice after it: 409.",
    )
    def destroy(self, request, pk=None):
        services.delete_draft_invoice(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="finalizeInvoice",
        request=None,
        responses={200: serializers.InvoiceSerializer, 400: INCOMPLETE, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def finalize(self, request, pk=None):
        return self._answer(services.finalize_invoice(self.get_object(), actor=request.user))

    @extend_schema(
        operation_id="sendInvoice",
        request=serializers.SendInvoiceSerializer,
        responses={
            202: serializers.InvoiceSerializer,
            403: OpenApiResponse(
                ErrorSerializer,
                description="The account's email address is not verified, or a session "
                "without its CSRF token.",
            ),
            409: CONFLICT,
            429: OpenApiResponse(
                QuotaErrorSerializer,
                description="The plan's daily quota of emails to clients is used up.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None):
        invoice = self.get_object()
        data = serializers.SendInvoiceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = services.send_invoice(
            invoice, to=data.validated_data.get("to"), actor=request.user
        )
        return self._answer(invoice, status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="recordPayment",
        request=serializers.PaymentSerializer,
        responses={201: serializers.PaymentSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def payments(self, request, pk=None):
        invoice = self.get_object()
        data = serializers.PaymentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment = services.record_payment(invoice, **data.validated_data, actor=request.user)
        return Response(serializers.PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="voidInvoice",
        request=None,
        responses={200: serializers.InvoiceSerializer, 409: CONFLICT},
        description="Void a finalized or sent invoice without payments; every download link "
        "to it is withdrawn, and its page says the invoice was voided.",
    )
    @action(detail=True, methods=["post"])
    def void(self, request, pk=None):
        return self._answer(services.void_invoice(self.get_object(), actor=request.user))

    @extend_schema(
        operation_id="listInvoiceTimeline",
        request=None,
        responses=serializers.TimelineItemSerializer(many=True),
        filters=False,
        description="What happened to the invoice and its emails, oldest first: created, "
        "finalized, sent, reminders, each email's delivery events (delivered, deferred, "
        "bounced, complained, ...) or why it was not sent, each view of the client's link "
        "(with its IP address and user agent), downloads, payments, paid, voided.",
    )
    @action(detail=True, methods=["get"], pagination_class=TimelineCursor)
    def timeline(self, request, pk=None):
        invoice = self.get_object()
        pages = self.paginator
        items = pages.paginate_timeline(invoice, request, self)
        return pages.get_paginated_response(
            serializers.TimelineItemSerializer(items, many=True).data
        )

    @extend_schema(
        operation_id="getInvoicePdf", responses={(200, "application/pdf"): OpenApiTypes.BINARY}
    )
    @action(detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, PDFRenderer])
    def pdf(self, request, pk=None):
        invoice = self.get_object()
        response = HttpResponse(render_invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{invoice.number}.pdf"'
        return response

    @extend_schema(
        methods=["GET"],
        operation_id="listDownloadLinks",
        request=None,
        responses=serializers.DownloadLinkSerializer(many=True),
        filters=False,  # an invoice's links, not the invoice list: its filters do not apply
    )
    @extend_schema(
        methods=["POST"],
        operation_id="createDownloadLink",
        request=serializers.DownloadLinkInputSerializer,
        responses={201: serializers.NewDownloadLinkSerializer, 409: CONFLICT},
    )
    # An invoice has a handful of links: the list is one plain array, not pages.
    @action(detail=True, methods=["get", "post"], url_path="download-links", pagination_class=None)
    def download_links(self, request, pk=None):
        """POST makes a link (its raw token is in this answer only); GET lists the links."""
        invoice = self.get_object()
        if request.method == "GET":
            links = SecureDownloadToken.objects.filter(
                resource_type="invoice", resource_id=str(invoice.pk)
            )
            return Response(serializers.DownloadLinkSerializer(links, many=True).data)
        data = serializers.DownloadLinkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = services.issue_download_link(
            invoice, created_by=request.user, **data.validated_data
        )
        answer = {"id": token.pk, "url": downloads.link_url(raw),
                  "preview_url": downloads.preview_url(token, raw),
                  "expires_at": token.expires_at, "max_downloads": token.max_downloads}  # fmt: skip
        return Response(
            serializers.NewDownloadLinkSerializer(answer).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(operation_id="revokeDownloadLink", request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"download-links/(?P<link_id>[0-9]+)",
        url_name="download-link",
    )
    def revoke_download_link(self, request, pk=None, link_id=None):
        invoice = self.get_object()
        link = get_object_or_404(
            SecureDownloadToken, pk=link_id, resource_type="invoice", resource_id=str(invoice.pk)
        )
        downloads.revoke_token(link)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BusinessProfileView(APIView):
    """The caller's business profile, as their invoices print it (empty until first set)."""

    @extend_schema(
        operation_id="getBusinessProfile", responses={200: serializers.BusinessProfileSerializer}
    )
    def get(self, request):
        profile = services.business_profile_of(request.user)
        return Response(serializers.BusinessProfileSerializer(profile).data)

    @extend_schema(
        operation_id="updateBusinessProfile",
        request=serializers.BusinessProfileSerializer,
        responses={200: serializers.BusinessProfileSerializer, 409: CONFLICT},
    )
    def patch(self, request):
        data = serializers.BusinessProfileSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        profile = services.update_business_profile(
            request.user, **data.validated_data, actor=request.user
        )
        return Response(serializers.BusinessProfileSerializer(profile).data)


class SubscriptionView(APIView):
    @extend_schema(
        operation_id="getSubscription",
        responses={200: serializers.SubscriptionSerializer, 404: NOT_FOUND},
    )
    def get(self, request):
        subscription = get_object_or_404(Subscription, user=request.user)
        return Response(serializers.SubscriptionSerializer(subscription).data)

    @extend_schema(
        operation_id="activateSubscription",
        request=serializers.ActivateSubscriptionSerializer,
        responses={201: serializers.SubscriptionSerializer, 409: CONFLICT},
    )
    def post(self, request):
        data = serializers.ActivateSubscriptionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subscription = services.activate_subscription(
            request.user, **data.validated_data, actor=request.user
        )
        return Response(
            serializers.SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED
        )


class SubscriptionChangeView(APIView):
    """POST cancel/ or renew/ on the caller's subscription."""

    change = None
    operation_id = None

    @extend_schema(
        request=None, responses={200: serializers.SubscriptionSerializer, 404: NOT_FOUND}
    )
    def post(self, request):
        subscription = get_object_or_404(Subscription, user=request.user)
        subscription = self.change(subscription, actor=request.user)
        return Response(serializers.SubscriptionSerializer(subscription).data)


@extend_schema_view(
    post=extend_schema(
        responses={200: serializers.SubscriptionSerializer, 404: NOT_FOUND, 409: CONFLICT}
    )
)
class CancelSubscriptionView(SubscriptionChangeView):
    """Only an active subscription can be cancelled; renewing never conflicts."""
