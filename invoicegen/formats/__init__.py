"""The project's formats for its language (settings.FORMAT_MODULE_PATH), in place of Django's:
the admin shows every time with its seconds and zone (2026-11-30 19:46:30 UTC), which audit
entries, outbox attempts and link expiries need to be read against each other and against logs.
"""
