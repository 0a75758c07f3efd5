from django.urls import re_path

from downloads import views

app_name = "downloads"

urlpatterns = [re_path(r"^(?P<token>[A-Za-z0-9_-]{1,128})/?$", views.download, name="download")]
