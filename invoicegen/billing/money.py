"""Amounts as people read them, per currency (Babel): `$1,250.00`, `¥1,250`, `KWD1,250.500`."""

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision
from django.conf import settings
from django.utils.translation import to_locale


def format_money(amount: Decimal, currency: str) -> str:
    """In the site's language, with the currency's own decimals unless the amount has more (an
    amount in yen with cents keeps them rather than being rounded)."""
    whole_units = amount == amount.quantize(Decimal(1).scaleb(-get_currency_precision(currency)))
    return format_currency(
        amount, currency, locale=to_locale(settings.LANGUAGE_CODE), currency_digits=whole_units
    )


def smallest_unit(currency: str) -> Decimal:
    """What a line's amount and the tax are rounded to: a cent, or a whole yen (amounts are
    stored with two decimals, so a dinar's thousandth is not kept)."""
    return Decimal(1).scaleb(-min(get_currency_precision(currency), 2))


def format_percent(rate: Decimal) -> str:
    """20.00 -> 20%, 7.25 -> 7.25%, 7.50 -> 7.5%."""
    return f"{rate.normalize():f}%"
