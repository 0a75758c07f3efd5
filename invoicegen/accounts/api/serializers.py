from rest_framework import serializers

from invoicegen.accounts.models import User, time_zones
from invoicegen.core import json_fields


class UserSerializer(json_fields.ModelSerializer):
    # The zone database's names, as an enum: a typed client knows them, and any other is a 400.
    timezone = serializers.ChoiceField(
        choices=sorted(time_zones()),
        required=False,
        help_text="An IANA time zone, like Europe/Paris.",
    )

    class Meta:
        model = User
        fields = ["id", "email", "name", "email_verified", "is_staff", "language", "timezone"]
        read_only_fields = ["id", "email", "email_verified", "is_staff"]
        extra_kwargs = {"language": {"help_text": "The language of what reaches the user."}}


class SignupSerializer(serializers.Serializer):
    email = json_fields.EmailField(max_length=254)
    password = json_fields.CharField(max_length=128, write_only=True, trim_whitespace=False)
    name = json_fields.CharField(max_length=150, required=False, allow_blank=True, default="")


class SignupResponseSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "email_verified"]


class LoginSerializer(serializers.Serializer):
    email = json_fields.EmailField(max_length=254)
    password = json_fields.CharField(max_length=128, trim_whitespace=False)


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    user = UserSerializer()


class PasswordChangeSerializer(serializers.Serializer):
    old_password = json_fields.CharField(max_length=128, trim_whitespace=False)
    new_password = json_fields.CharField(max_length=128, trim_whitespace=False)


class PasswordResetSerializer(serializers.Serializer):
    email = json_fields.EmailField(max_length=254)


class EmailLinkSerializer(serializers.Serializer):
    uid = json_fields.CharField(max_length=64)
    token = json_fields.CharField(max_length=128)


class PasswordResetConfirmSerializer(EmailLinkSerializer):
    new_password = json_fields.CharField(max_length=128, trim_whitespace=False)
