from django.urls import re_path

from emails.webhooks import tracking_webhook

urlpatterns = [
    re_path(r"^(?P<provider>[a-z_]+)/tracking/?$", tracking_webhook, name="email_tracking_webhook"),
]
