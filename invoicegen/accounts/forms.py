"""The forms of the pages that emailed links open (views.py)."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


class EmailLinkForm(forms.Form):
    """The `uid` and `token` of an emailed link, read from its query; as long as the API takes
    them (EmailLinkSerializer), no longer."""

    uid = forms.CharField(max_length=64)
    token = forms.CharField(max_length=128)


class NewPasswordForm(forms.Form):
    new_password1 = forms.CharField(
        label=_("New password"),
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
    )
    new_password2 = forms.CharField(
        label=_("New password again"),
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        first, second = data.get("new_password1"), data.get("new_password2")
        if first and second and first != second:
            raise ValidationError({"new_password2": _("The two passwords differ.")})
        return data
