"""The Flask application factory."""

from __future__ import annotations

import http
import logging
from typing import Any

from flask import Flask, jsonify
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from netboot.agent_endpoints import make_blueprint as agent_blueprint
from netboot.endpoints import make_blueprint as boot_blueprint
from portal.api import bodies, docs, limits, problems
from portal.api.aggregates.views import blp as aggregates_blp
from portal.api.auth import count_auth_failures, refuse_throttled_clients
from portal.api.common import close_session
from portal.api.events.views import blp as events_blp
from portal.api.flavors.views import blp as flavors_blp
from portal.api.identity.views import blp as identity_blp
from portal.api.images.views import blp as images_blp
from portal.api.instances.views import blp as instances_blp
from portal.api.jsonprovider import OrjsonProvider
from portal.api.keypairs.views import blp as keypairs_blp
from portal.api.networks.views import blp as networks_blp
from portal.api.nodes.views import NodeIdent, node_ident_schema
from portal.api.nodes.views import blp as nodes_blp
from portal.api.server_groups.views import blp as server_groups_blp
from portal.api.switches.views import blp as switches_blp
from portal.core.config import Settings
from portal.core.errors import DomainError
from portal.services.context import Context
from portal.services.throttle import FailureThrottle

log = logging.getLogger(__name__)


class ProblemApi(Api):
    """flask-smorest with RFC 9457 problem bodies for every HTTP error, documented as such:
    each error status is a response component with an ``application/problem+json`` body of
    the ``Problem`` schema (portal.api.common.Blueprint lists which statuses each operation
    can answer); no catch-all ``default`` response."""

    ERROR_SCHEMA = problems.Problem
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Any:
        return problems.from_http_exception(error)

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            if status >= 400:
                response = {"description": status.phrase, "schema": self.ERROR_SCHEMA}
                prepare_response(response, self.spec, problems.CONTENT_TYPE)
                self.spec.components.response(status.name, response, lazy=True)


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    settings = settings or (context.settings if context else Settings.from_env())
    context = context or Context.build(settings)
    context.queue  # noqa: B018  fail at start-up, not on the first enqueue, if Redis is missing
    app = Flask("portal")
    provider = OrjsonProvider(app)
    provider.max_depth = settings.max_json_depth
    app.json = provider
    app.config.update(
        API_TITLE="BMS Portal",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/v1",
        OPENAPI_JSON_PATH="openapi.json",
        # /v1/docs is served by portal.api.docs from installed files (no CDN).
        # None: Werkzeug's cap would cut a chunked body short silently; portal.api.limits
        # refuses a body past the limit for its kind of request (JSON, import, image data).
        MAX_CONTENT_LENGTH=None,
        JSON_SORT_KEYS=False,
    )
    app.extensions["bms"] = context
    app.extensions["bms_token_cache"] = {}
    app.extensions["bms_auth_throttle"] = FailureThrottle(
        lambda: context.queue.connection,
        settings.queue_name,
        settings.auth_failure_limit,
        settings.auth_failure_window,
        settings.trusted_proxies,
    )
    app.before_request(refuse_throttled_clients)
    app.after_request(count_auth_failures)
    api = ProblemApi(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {
                    "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
                }
            },
            "security": [{"token": []}],
        },
    )
    app.url_map.converters["node_ident"] = NodeIdent
    api.register_converter(NodeIdent, node_ident_schema)
    for blp in (
        nodes_blp,
        flavors_blp,
        images_blp,
        instances_blp,
        networks_blp,
        keypairs_blp,
        server_groups_blp,
        aggregates_blp,
        switches_blp,
        identity_blp,
        events_blp,
    ):
        api.register_blueprint(blp)

    app.register_blueprint(boot_blueprint(lambda: context.settings.var_dir / "netboot"))
    app.register_blueprint(
        agent_blueprint(context.session, lambda: context.store, _resume_after_agent(context))
    )
    app.register_blueprint(docs.make_blueprint())
    app.before_request(bodies.check_request_strings)
    app.teardown_request(close_session)
    limits.install(app, settings)
    app.register_error_handler(DomainError, problems.from_domain_error)
    app.register_error_handler(HTTPException, problems.from_http_exception)
    if not settings.debug:
        app.register_error_handler(Exception, problems.from_unexpected)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/")
    def root() -> Any:
        return jsonify(name="BMS Portal", api="/v1", openapi="/v1/openapi.json", docs="/v1/docs")

    return app


def _resume_after_agent(context: Context) -> Any:
    """What the agent endpoints call when the command a plan waits for is reported: the job
    that resumes the plan, enqueued once the report commits."""
    from portal.core.models import Node
    from portal.core.states import CLEAN_WAIT, DEPLOY_WAIT, INSPECT_WAIT
    from workers import queue as jobqueue

    jobs = {
        DEPLOY_WAIT: "continue_deploy",
        CLEAN_WAIT: "continue_clean",
        INSPECT_WAIT: "continue_inspect",
    }

    def resume(s: Any, node: Node) -> None:
        job = jobs.get(node.provision_state)
        if job is not None:
            node.job_id = context.enqueue_after_commit(s, job, node.id, retry=jobqueue.LOCK_RETRY)

    return resume
