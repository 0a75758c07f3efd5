from decimal import Decimal

import pytest
from rest_framework import serializers

from invoicegen.core.api import decimal_text


@pytest.mark.parametrize("value", ["0", "3.335", "3.345", "-0.005", "1E+3", "0.1", "315.50"])
def test_a_decimal_is_written_as_drfs_decimal_field_writes_it(value):
    """Rounded half to even, as the field's quantize() does with the default context."""
    field = serializers.DecimalField(max_digits=14, decimal_places=2)

    assert decimal_text(Decimal(value)) == field.to_representation(Decimal(value))


def test_no_decimal_is_written_as_null():
    assert decimal_text(None) is None
