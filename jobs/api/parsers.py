"""JSON bodies, parsed with a bound on how deeply they nest.

Python's ``json`` parser recurses once per level: a body of a thousand ``[``
raised ``RecursionError``, which is not a ``ValueError``, so DRF let it through
as a 500 with a long traceback. No body this API takes nests more than a few
levels, so anything deeper than ``MAX_DEPTH`` is refused as malformed (400),
whether the parser itself gave up or not; the depth is measured without
recursion, so measuring it cannot fail the same way.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


def depth_of(value: object) -> int:
    """How many arrays and objects deep ``value`` nests (a scalar is 0)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, level = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = ParseError(f"JSON parse error - the body nests more than {MAX_DEPTH} levels deep.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if depth_of(data) > MAX_DEPTH:
            raise too_deep
        return data
