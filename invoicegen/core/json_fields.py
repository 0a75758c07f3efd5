"""Serializer fields that take a request body's values as the OpenAPI schema describes them.

DRF's fields are lenient: a string field turns 0 into "0", an integer field takes "5", and a
decimal field takes numbers, exponents, spaces and non-ASCII digits. The schema promises
strings, integers and plain decimal strings, so a client that sends anything else gets a 400
naming the field, and the schema and the validation refuse the same values.
"""

import re
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from rest_framework import serializers


class StringOnly:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CharField(StringOnly, serializers.CharField):
    pass


class EmailField(StringOnly, serializers.EmailField):
    pass


class IntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class DecimalField(serializers.DecimalField):
    """A decimal as a string of ASCII digits with at most `decimal_places` decimals; `pattern`
    is both what the schema states and what is checked. Its lower bound is none, 0 (no sign)
    or the smallest step, 0.01 for two places (not zero either): the bounds a pattern can say."""

    def __init__(self, *, max_digits, decimal_places, min_value=None, **kwargs):
        step = Decimal(1).scaleb(-decimal_places)
        if min_value not in (None, Decimal(0), step):
            raise ImproperlyConfigured(f"min_value must be None, 0 or {step}.")
        super().__init__(
            max_digits=max_digits, decimal_places=decimal_places, min_value=min_value, **kwargs
        )
        whole = max_digits - decimal_places
        sign = "-?" if min_value is None else ""
        not_zero = "(?=.*[1-9])" if min_value == step else ""
        self.pattern = f"^{sign}{not_zero}[0-9]{{1,{whole}}}(?:\\.[0-9]{{1,{decimal_places}}})?$"

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(self.pattern, data):
            self.fail("invalid")
        return super().to_internal_value(data)


# Model fields become the strict fields above. (No docstring: the schema would take it as the
# description of every serializer built on this one.)
class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: CharField,
        models.TextField: CharField,
        models.EmailField: EmailField,
    }
