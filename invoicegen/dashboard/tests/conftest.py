import pytest


@pytest.fixture(autouse=True)
def new_york(settings):
    """Days are the site's: a zone other than UTC shows that they are."""
    settings.TIME_ZONE = "America/New_York"
