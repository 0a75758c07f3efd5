"""The invoice as a PDF document (ReportLab)."""

from io import BytesIO
from pathlib import Path

from django.utils.html import escape
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from invoicegen.billing.models import Invoice

# DejaVu Sans (shipped in fonts/) covers the accented and non-Latin letters of client names,
# which the PDF's built-in Helvetica cannot draw.
FONTS = Path(__file__).parent / "fonts"
pdfmetrics.registerFont(TTFont("DejaVuSans", FONTS / "DejaVuSans.ttf"))
pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", FONTS / "DejaVuSans-Bold.ttf"))


def render_invoice_pdf(invoice: Invoice) -> bytes:
    styles = getSampleStyleSheet()
    for name in ("Normal", "Title"):
        styles[name].fontName = "DejaVuSans-Bold" if name == "Title" else "DejaVuSans"
    issuer = invoice.user
    buffer = BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"Invoice {invoice.number}",
        author=issuer.get_full_name(),
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
    )

    def paragraph(text, style="Normal"):
        return Paragraph(escape(str(text)), styles[style])

    rows = [["Description", "Quantity", "Unit price", "Amount"]]
    rows += [
        [paragraph(item.description), item.quantity, item.unit_price, item.amount]
        for item in invoice.items.all()
    ]
    rows.append(["", "", "Total", f"{invoice.total} {invoice.currency}"])
    table = Table(rows, colWidths=[85 * mm, 25 * mm, 30 * mm, 30 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.grey),
                ("FONTNAME", (0, 0), (-1, -1), "DejaVuSans"),
                ("FONTNAME", (2, -1), (-1, -1), "DejaVuSans-Bold"),
            ]
        )
    )
    story = [
        paragraph(f"Invoice {invoice.number}", "Title"),
        paragraph(f"Status: {invoice.get_status_display()}"),
        paragraph(f"Issued by: {issuer.get_full_name()} <{issuer.email}>"),
        paragraph(f"Billed to: {invoice.client_name} <{invoice.client_email}>"),
        paragraph(f"Issued: {invoice.created_at:%Y-%m-%d}  Due: {invoice.due_date:%Y-%m-%d}"),
        Spacer(1, 8 * mm),
        table,
        Spacer(1, 6 * mm),
        paragraph(f"Paid: {invoice.amount_paid} {invoice.currency}"),
        paragraph(f"Balance due: {invoice.balance_due} {invoice.currency}"),
    ]
    document.build(story)
    return buffer.getvalue()
