"""Domain errors raised by services; the API turns them into HTTP answers (invoicegen/api.py)."""


class ConflictError(Exception):
    """The object is not in a state that allows this operation (HTTP 409)."""
