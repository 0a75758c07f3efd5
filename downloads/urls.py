from django.urls import re_path

from downloads import views

app_name = "downloads"

# Everything under downloads/ reaches the view, malformed links included: Django's own 404 would
# log the path, and with it whatever token the path holds.
urlpatterns = [re_path(r"^(?P<token>.*)$", views.download, name="download")]
