"""/v1/docs: Swagger UI served by the portal itself, never from a CDN.

An air-gapped datacenter is the normal place for a bare-metal portal, so the docs page
loads nothing from outside: Swagger UI's files come from the installed ``flask-swagger-ui``
package (pinned in pyproject.toml; only its ``dist`` files are used), under a URL that
names their version so browsers may cache them for good. The page has no inline script,
so its Content-Security-Policy allows scripts from the portal only.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Blueprint, Response, send_from_directory

ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
VERSION = version("flask-swagger-ui")
PREFIX = "/v1/docs"
ASSET_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)  # Swagger UI (React) sets style attributes: hence 'unsafe-inline' for styles only

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>BMS Portal API</title>
  <link rel="stylesheet" href="{PREFIX}/{VERSION}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{PREFIX}/{VERSION}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui" data-spec-url="/v1/openapi.json"></div>
  <script src="{PREFIX}/{VERSION}/swagger-ui-bundle.js"></script>
  <script src="{PREFIX}/{VERSION}/init.js"></script>
</body>
</html>
"""

# validatorUrl null: Swagger UI would otherwise fetch a badge from an outside validator.
INIT_JS = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

YEAR = 365 * 24 * 3600


def make_blueprint() -> Blueprint:
    bp = Blueprint("docs", __name__)

    @bp.get(PREFIX)
    def page() -> Any:
        resp = Response(PAGE, mimetype="text/html")
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["Cache-Control"] = "no-cache"  # names the assets' version: revalidate
        return resp

    @bp.get(f"{PREFIX}/<version>/<name>")
    def asset(version: str, name: str) -> Any:
        if version != VERSION or name not in (*ASSET_FILES, "init.js"):
            return Response("not found", 404, mimetype="text/plain")
        if name == "init.js":
            resp = Response(INIT_JS, mimetype="text/javascript")
        else:
            resp = send_from_directory(ASSETS, name, max_age=YEAR)
        # The URL changes with the version: a file under it never changes.
        resp.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    return bp
