from django.urls import re_path

from invoicegen.accounts import views

app_name = "accounts"

# The paths of the links in emails (services._spa_link), with and without a trailing slash.
urlpatterns = [
    re_path(r"^verify-email/?$", views.verify_email, name="verify-email"),
    re_path(r"^reset-password/?$", views.reset_password, name="reset-password"),
]
