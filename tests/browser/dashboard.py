"""Steps in the admin that more than one browser run takes: logging in, and opening the
dashboard from the index and saving a picture of it (tests, and screenshots for the docs)."""

from pathlib import Path

from playwright.sync_api import Page

# A laptop's screen: the dashboard must read well at this size.
LAPTOP = {"width": 1280, "height": 800}


def log_into_admin(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")


def open_dashboard(page: Page, base_url: str, email: str, password: str) -> None:
    """Log in and follow the admin index's link to the dashboard, at a laptop's size."""
    page.set_viewport_size(LAPTOP)
    log_into_admin(page, base_url, email, password)
    with page.expect_navigation():
        page.click("#dashboard-module a")
    page.locator("svg.chart").first.wait_for()


def save_dashboard(page: Page, base_url: str, email: str, password: str, path: Path) -> Path:
    open_dashboard(page, base_url, email, password)
    page.screenshot(path=str(path), full_page=True)
    return path
