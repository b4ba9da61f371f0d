"""Flask's JSON provider on orjson: encoding a 1,000-node page is the largest single cost of
the list after the query (docs/performance.md)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app
from flask.json.provider import DefaultJSONProvider

from portal.api import bodies

OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    max_depth = bodies.DEFAULT_MAX_DEPTH  # BMS_MAX_JSON_DEPTH, set by the app factory

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default, option=OPTIONS).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """As Flask's, but the body goes out as orjson's bytes: no decode to ``str`` and
        encode back (two copies of a 0.9 MB page). Indented in debug mode, as Flask's."""
        obj = self._prepare_response_obj(args, kwargs)
        option = OPTIONS | orjson.OPT_APPEND_NEWLINE
        if (self.compact is None and self._app.debug) or self.compact is False:
            option |= orjson.OPT_INDENT_2
        body = orjson.dumps(obj, default=self.default, option=option)
        return current_app.response_class(body, mimetype=self.mimetype)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Every request body parsed with ``request.get_json()`` (and so every webargs
        ``json`` location) comes here: depth, NUL, surrogates, NaN are checked once."""
        return bodies.load(s, self.max_depth)
