"""The demo: the whole system's story in one screen (`make demo`); not part of the product."""
