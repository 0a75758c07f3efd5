from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.template.response import TemplateResponse

from audit.admin import AuditedModelAdmin
from invoicegen.accounts.models import AuthToken, User
from notifications.admin import NotificationPreferenceInline
from notifications.services import send_admin_message


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email", "name")


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"


class AdminMessageForm(forms.Form):
    title = forms.CharField(max_length=200)
    message = forms.CharField(widget=forms.Textarea)
    send_email = forms.BooleanField(required=False, help_text="Also email it to them.")


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    actions = ["send_message"]
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ["-date_joined"]
    list_display = ["email", "name", "email_verified", "is_active", "is_staff", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "email_verified"]
    search_fields = ["email", "name"]
    readonly_fields = ["last_login", "date_joined"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "email_verified", "language", "timezone")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )

    def get_inlines(self, request, obj):
        """An existing user's page shows their notification preferences (a new one has none)."""
        return [NotificationPreferenceInline] if obj else []

    @admin.action(description="Send a message to the selected users", permissions=["change"])
    def send_message(self, request, queryset):
        """An intermediate page asks for the message; its submit sends it to every user."""
        form = AdminMessageForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            # Only people who can read it: an inactive account cannot log in, and an address
            # nobody confirmed may not be its owner's.
            reachable = list(queryset.filter(is_active=True, email_verified=True))
            skipped = queryset.count() - len(reachable)
            sent = send_admin_message(reachable, **form.cleaned_data, skipped=skipped)
            text = f"Message sent to {len(sent)} user(s)."
            if skipped:
                text += f" Skipped {skipped} inactive or unverified user(s)."
            self.message_user(request, text, messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Send a message",
            "form": form,
            "users": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/user/send_message.html", context)

    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "name", "password1", "password2"),
            },
        ),
    )


@admin.register(AuthToken)
class AuthTokenAdmin(AuditedModelAdmin):
    """API tokens can be seen and revoked, never read: only a hash is stored."""

    list_display = ["user", "created_at", "last_used_at", "key_prefix"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    fields = ["user", "created_at", "last_used_at", "key_prefix"]
    readonly_fields = fields

    @admin.display(description="hash prefix")
    def key_prefix(self, token):
        return f"{token.key_hash[:8]}…"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
