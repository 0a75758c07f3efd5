"""The invoice as a PDF document (ReportLab): the issuer and client blocks, the dates, the lines
(their header repeated on every page), the totals, how to pay, the notes, page numbers, and a
PAID or VOID stamp; in the client's language (`client_language`), its amounts and dates as they
are written there."""

from io import BytesIO
from pathlib import Path

from django.utils import timezone, translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from invoicegen.billing import services
from invoicegen.billing.models import BusinessProfile, Invoice
from invoicegen.billing.money import format_day, format_money, format_percent, format_quantity

# DejaVu Sans (shipped in fonts/) covers the accented and non-Latin letters of client names,
# which the PDF's built-in Helvetica cannot draw.
FONTS = Path(__file__).parent / "fonts"
pdfmetrics.registerFont(TTFont("DejaVuSans", FONTS / "DejaVuSans.ttf"))
pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", FONTS / "DejaVuSans-Bold.ttf"))

MARGIN = 18 * mm
WIDTH = A4[0] - 2 * MARGIN
GREY = colors.HexColor("#666666")
TEXT = ParagraphStyle("text", fontName="DejaVuSans", fontSize=9.5, leading=13)
SMALL = ParagraphStyle("small", parent=TEXT, fontSize=8.5, leading=11, textColor=GREY)
BOLD = ParagraphStyle("bold", parent=TEXT, fontName="DejaVuSans-Bold")
HEADING = ParagraphStyle("heading", parent=BOLD, fontSize=10.5, spaceBefore=6, spaceAfter=2)
TITLE = ParagraphStyle("title", parent=BOLD, fontSize=22, leading=26, alignment=2)
RIGHT = ParagraphStyle("right", parent=TEXT, alignment=2)
UNBOXED = [("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]
STAMPS = {
    Invoice.Status.PAID: (gettext_lazy("PAID"), "#1b7f3b"),
    Invoice.Status.VOID: (gettext_lazy("VOID"), "#b3261e"),
}
LOGO_BOX = (45 * mm, 22 * mm)


def _text(value, style=TEXT) -> Paragraph:
    """User text printed literally (markup escaped), its line breaks kept."""
    return Paragraph(escape(str(value)).replace("\n", "<br/>"), style)


def _block(title: str, lines: list[str]) -> list:
    name, *rest = [line for line in lines if line]
    return [_text(title, SMALL), _text(name, BOLD), *(_text(line) for line in rest)]


def _logo(profile: BusinessProfile | None):
    if not profile or not profile.logo:
        return ""
    image = ImageReader(BytesIO(bytes(profile.logo)))
    width, height = image.getSize()
    scale = min(LOGO_BOX[0] / width, LOGO_BOX[1] / height)
    return Image(BytesIO(bytes(profile.logo)), width * scale, height * scale, hAlign="LEFT")


def _canvas_for(invoice: Invoice):
    """A canvas that knows the page count when it writes each page's footer, and stamps the
    first page of a paid or void invoice."""
    stamp = STAMPS.get(invoice.status)

    class InvoiceCanvas(Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            for number, page in enumerate(self._pages, start=1):
                self.__dict__.update(page)
                self._footer(number, len(self._pages))
                if stamp and number == 1:
                    self._stamp(*stamp)
                super().showPage()
            super().save()

        def _footer(self, number: int, count: int):
            self.setFont("DejaVuSans", 8)
            self.setFillColor(GREY)
            self.drawString(MARGIN, 10 * mm, _("Invoice %(number)s") % {"number": invoice.number})
            page = _("Page %(number)d of %(count)d") % {"number": number, "count": count}
            self.drawRightString(A4[0] - MARGIN, 10 * mm, page)

        def _stamp(self, word: str, color: str):
            self.saveState()
            self.translate(A4[0] - 60 * mm, A4[1] - 95 * mm)
            self.rotate(18)
            self.setStrokeColor(colors.HexColor(color))
            self.setFillColor(colors.HexColor(color))
            self.setLineWidth(2.5)
            self.roundRect(-34 * mm, -9 * mm, 68 * mm, 20 * mm, 3 * mm)
            self.setFont("DejaVuSans-Bold", 34)
            self.drawCentredString(0, -3 * mm, str(word))
            self.restoreState()

    return InvoiceCanvas


def _lines_table(invoice: Invoice) -> Table:
    money = invoice.currency
    rows = [[_("Description"), _("Quantity"), _("Unit price"), _("Amount")]]
    rows += [
        [
            _text(item.description),
            format_quantity(item.quantity),
            format_money(item.unit_price, money),
            format_money(item.amount, money),
        ]
        for item in invoice.items.all()
    ]
    widths = [WIDTH - 95 * mm, 22 * mm, 35 * mm, 38 * mm]
    # A line taller than a page (a description of many short lines) goes on over the next.
    table = Table(rows, colWidths=widths, repeatRows=1, splitInRow=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), "DejaVuSans"),
                ("FONTNAME", (0, 0), (-1, 0), "DejaVuSans-Bold"),
                ("FONTSIZE", (0, 0), (-1, -1), 9.5),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f0f0f0")),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, GREY),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#dddddd")),
            ]
        )
    )
    return table


def _totals_table(invoice: Invoice) -> Table:
    money = invoice.currency
    rows = [
        (_("Subtotal"), format_money(invoice.subtotal, money)),
        (
            _("Tax (%(rate)s)") % {"rate": format_percent(invoice.tax_rate)},
            format_money(invoice.tax_total, money),
        ),
        (_("Total"), format_money(invoice.total, money)),
    ]
    if invoice.amount_paid:
        rows.append((_("Amount paid"), format_money(invoice.amount_paid, money)))
    if invoice.status != Invoice.Status.VOID:  # a void invoice is not due
        rows.append((_("Balance due"), format_money(invoice.balance_due, money)))
    table = Table(rows, colWidths=[40 * mm, 38 * mm], hAlign="RIGHT")
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), "DejaVuSans"),
                ("FONTSIZE", (0, 0), (-1, -1), 9.5),
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("FONTNAME", (0, 2), (-1, 2), "DejaVuSans-Bold"),
                ("LINEABOVE", (0, 2), (-1, 2), 0.6, GREY),
                ("FONTNAME", (0, -1), (-1, -1), "DejaVuSans-Bold"),
            ]
        )
    )
    return table


def render_invoice_pdf(invoice: Invoice) -> bytes:
    with translation.override(invoice.client_language):
        return _render(invoice)


def _render(invoice: Invoice) -> bytes:
    # Issued invoices print the issuer as it was when they were finalized; a draft, as it is.
    issuer = invoice.issuer or services.issuer_details(invoice.user)
    profile = BusinessProfile.objects.only("logo").filter(user_id=invoice.user_id).first()
    issued = timezone.localdate(invoice.finalized_at or invoice.created_at)
    buffer = BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=_("Invoice %(number)s") % {"number": invoice.number},
        author=issuer["name"],
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 4 * mm,
    )
    header = Table(
        [[_logo(profile), [_text(_("INVOICE"), TITLE), _text(invoice.number, RIGHT)]]],
        colWidths=[WIDTH / 2] * 2,
    )
    tax_id = _("Tax ID: %(tax_id)s") % issuer if issuer["tax_id"] else ""
    parties = Table(
        [
            [
                _block(_("From"), [issuer["name"], issuer["address"], tax_id, issuer["email"]]),
                _block(
                    _("Bill to"),
                    [invoice.client_name, invoice.client_address, invoice.client_email],
                ),
            ]
        ],
        colWidths=[WIDTH / 2] * 2,
        splitInRow=1,  # an address of many lines goes on over the next page
    )
    dates = Table(
        [
            [_("Invoice number"), invoice.number],
            [_("Issue date"), format_day(issued)],
            [_("Due date"), format_day(invoice.due_date)],
        ],
        colWidths=[32 * mm, 50 * mm],
        hAlign="LEFT",
    )
    dates.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, -1), "DejaVuSans"),
                ("FONTNAME", (0, 0), (0, -1), "DejaVuSans-Bold"),
                ("FONTSIZE", (0, 0), (-1, -1), 9.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    for table in (header, parties):
        table.setStyle(TableStyle(UNBOXED))
    story = [
        header,
        Spacer(1, 8 * mm),
        parties,
        Spacer(1, 6 * mm),
        dates,
        Spacer(1, 6 * mm),
        _lines_table(invoice),
        Spacer(1, 4 * mm),
        _totals_table(invoice),
    ]
    due = invoice.balance_due and invoice.status != Invoice.Status.VOID
    if issuer["payment_instructions"] and due:
        story += [_text(_("How to pay"), HEADING), _text(issuer["payment_instructions"])]
    if invoice.notes:
        story += [_text(_("Notes"), HEADING), _text(invoice.notes)]
    document.build(story, canvasmaker=_canvas_for(invoice))
    return buffer.getvalue()
