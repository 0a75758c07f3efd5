from django.urls import re_path

from notifications import views

app_name = "notifications"

# The path the digest email links to, with and without a trailing slash.
urlpatterns = [re_path(r"^notifications/?$", views.notifications_page, name="page")]
