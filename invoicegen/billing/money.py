"""Amounts and days as people read them, in the active language (Babel): `$1,250.00`, `¥1,250`,
`KWD1,250.500`, `1.250,00 €`; `Dec 1, 2026`, `01.12.2026`."""

import datetime
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, get_currency_precision
from django.conf import settings
from django.utils.translation import get_language, to_locale


def _locale() -> str:
    return to_locale(get_language() or settings.LANGUAGE_CODE)


def format_money(amount: Decimal, currency: str) -> str:
    """In the active language (`1.234,56 €` in German), with the currency's own decimals unless
    the amount has more (an amount in yen with cents keeps them rather than being rounded)."""
    whole_units = amount == amount.quantize(Decimal(1).scaleb(-get_currency_precision(currency)))
    return format_currency(amount, currency, locale=_locale(), currency_digits=whole_units)


def format_quantity(quantity: Decimal) -> str:
    """1.50 -> `1.5`, `1,5` in German; as many decimals as it has."""
    return format_decimal(quantity.normalize(), locale=_locale(), decimal_quantization=False)


def format_day(day: datetime.date) -> str:
    return format_date(day, format="medium", locale=_locale())


def smallest_unit(currency: str) -> Decimal:
    """What a line's amount and the tax are rounded to: a cent, or a whole yen (amounts are
    stored with two decimals, so a dinar's thousandth is not kept)."""
    return Decimal(1).scaleb(-min(get_currency_precision(currency), 2))


def format_percent(rate: Decimal) -> str:
    """20.00 -> 20%, 7.25 -> 7.25%, 7.50 -> 7.5%."""
    return f"{rate.normalize():f}%"
