"""The classes DRF's APIView loads while it is being defined (DEFAULT_PARSER_CLASSES,
DEFAULT_METADATA_CLASS): apart from invoicegen.core.api, whose exception handler imports DRF's views
and would make that import circular."""

import re

from rest_framework import exceptions, metadata, parsers

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJSONParser(parsers.JSONParser):
    """JSON the rest of the stack survives: no nesting deeper than `max_depth` (deeper input
    exhausts the recursion of the decoder and of everything that walks the data), and no lone
    surrogate in a string or key (no UTF-8 encoder accepts one, so even a 400 that quoted it
    back would fail to render). The body's size is bounded before: DRF reads it through
    `request.body`, which enforces DATA_UPLOAD_MAX_MEMORY_SIZE (a 413, invoicegen.core.api)."""

    max_depth = 32

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(self._nesting_error()) from None
        self._check(data)
        return data

    def _nesting_error(self) -> str:
        return f"JSON parse error - nesting is deeper than {self.max_depth} levels."

    def _check(self, data) -> None:
        """Walk the data without recursion; a path is (parent path, key), spelled on error."""
        pending = [(data, 1, None)]
        while pending:
            value, depth, path = pending.pop()
            if isinstance(value, str):
                if LONE_SURROGATE.search(value):
                    raise exceptions.ParseError(_surrogate_error("the value", path))
                continue
            if not isinstance(value, dict | list):
                continue
            if depth > self.max_depth:
                raise exceptions.ParseError(self._nesting_error())
            if isinstance(value, list):
                pending.extend((item, depth + 1, (path, i)) for i, item in enumerate(value))
                continue
            for key, item in value.items():
                if LONE_SURROGATE.search(key):
                    raise exceptions.ParseError(_surrogate_error("a key", path))
                pending.append((item, depth + 1, (path, key)))


def _surrogate_error(what: str, path) -> str:
    where = _spell_path(path) or "the top level"
    return (
        f"JSON parse error - {what} at {where} holds a lone surrogate "
        "(a \\ud800-\\udfff escape that is not half of a pair)."
    )


def _spell_path(path) -> str:
    """(((None, 'items'), 0), 'description') -> 'items[0].description'."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")


class ActionAwareMetadata(metadata.SimpleMetadata):
    """OPTIONS describes a body only where the view's serializer is that body. DRF's
    SimpleMetadata treats every PUT as an update of the object in the URL and calls
    `get_object()`, which fails with an AssertionError (a 500) on an extra action without one
    (PUT notifications/mark-all-read/); and an extra action's body is not the view's
    serializer anyway: the OpenAPI schema describes it."""

    def determine_actions(self, request, view):
        handlers = (getattr(view, name, None) for name in getattr(view, "action_map", {}).values())
        if any(hasattr(handler, "mapping") for handler in handlers):  # made by @action
            return {}
        return super().determine_actions(request, view)
