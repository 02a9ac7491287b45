"""Endpoints declared once: path, method, who may call it, what it takes and returns.

The same declarations register the aiohttp routes, check access before any handler runs, validate
JSON bodies (jsonschema), and produce /api/openapi.json, so the published API, the access rules and
the code cannot drift apart. The permission test walks this list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from aiohttp import web

OFFICER = "officer"
SUPERVISOR = "supervisor"
LEGAL_REVIEWER = "legal_reviewer"
PUBLISHER = "publisher"
AUDITOR = "auditor"
ADMINISTRATOR = "administrator"
ROLES = (OFFICER, SUPERVISOR, LEGAL_REVIEWER, PUBLISHER, AUDITOR, ADMINISTRATOR)

PUBLIC = "public"  # anyone, signed in or not
GATEWAY = "gateway"  # an enrolled gateway, signed in with its key
USERS = "users"  # any signed-in person; the handler narrows what they see

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person (with a role) or a gateway."""

    kind: str  # user | gateway
    id: int | str
    name: str
    role: str | None = None
    unit: str | None = None
    officer_no: str | None = None

    @property
    def actor(self) -> str:
        """How audit records and public log records name the caller: an id, never a name."""
        return f"{self.kind}:{self.id}"


PRINCIPAL = web.RequestKey("principal", Principal)


class ApiError(web.HTTPException):
    """An error answered as JSON {"error": code, "message": ...}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(headers=headers, text=json.dumps({"error": code, "message": message}),
                         content_type="application/json")


def unauthorized(message: str = "sign in first: a session cookie or an Authorization: Bearer token") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="liuhen"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    access: tuple[str, ...]  # (PUBLIC,), (GATEWAY,), (USERS,) or roles
    body: dict[str, Any] | None = None  # JSON schema of the request body
    query: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> schema (+ "required")
    footage: bool = False  # serves footage bytes: an audit record must exist before the first byte
    responses: dict[int, str] = field(default_factory=dict)
    raw: bool = False  # handler reads the body itself (uploads)

    def allows(self, principal: Principal | None) -> bool | None:
        """True: allowed; None: must sign in (401); False: signed in but not allowed (403)."""
        if PUBLIC in self.access:
            return True
        if principal is None:
            return None
        if principal.kind == "gateway":
            return GATEWAY in self.access
        return USERS in self.access or principal.role in self.access


class Routes:
    """The endpoints of one module of the server."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def add(self, method: str, path: str, *, summary: str, access: tuple[str, ...] | str,
            body: dict[str, Any] | None = None, query: dict[str, dict[str, Any]] | None = None,
            footage: bool = False, responses: dict[int, str] | None = None,
            raw: bool = False) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method, path, handler, summary, self.tag,
                                           (access,) if isinstance(access, str) else access, body,
                                           query or {}, footage, responses or {}, raw))
            return handler
        return register


def _guarded(endpoint: Endpoint) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        allowed = endpoint.allows(request.get(PRINCIPAL))
        if allowed is None:
            raise unauthorized()
        if not allowed:
            raise forbidden(f"{endpoint.method} {endpoint.path} is not open to your role")
        return await endpoint.handler(request)
    return handle


def install(app: web.Application, routes: list[Routes]) -> list[Endpoint]:
    endpoints = [e for r in routes for e in r.endpoints]
    for e in endpoints:
        app.router.add_route(e.method, e.path, _guarded(e))
    return endpoints


async def json_body(request: web.Request, schema: dict[str, Any]) -> Any:
    """The request's JSON body, checked against `schema`; a clear 400 otherwise."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "body"
        raise bad_request(f"{where}: {exc.message}") from None
    return data


def client_of(request: web.Request) -> str:
    """How an audit record names the client an access came from: address and user agent."""
    return f"{request.remote or ''} {request.headers.get('User-Agent', '')}".strip()[:200]


def query_params(request: web.Request, spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Query parameters converted to their declared types (integer, number, string, boolean)."""
    out: dict[str, Any] = {}
    for name, schema in spec.items():
        text = request.query.get(name)
        if text is None:
            if schema.get("required"):
                raise bad_request(f"query parameter {name} is required")
            continue
        kind = schema.get("type", "string")
        try:
            value: Any = {"integer": int, "number": float, "boolean": _boolean, "string": str}[kind](text)
        except ValueError:
            raise bad_request(f"query parameter {name} must be {kind}, not {text!r}") from None
        if "enum" in schema and value not in schema["enum"]:
            raise bad_request(f"query parameter {name} must be one of {', '.join(map(str, schema['enum']))}")
        out[name] = value
    return out


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"


def openapi(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "x-liuhen-access": list(e.access),
            "responses": {str(k): {"description": v} for k, v in
                          ({200: "OK"} | e.responses | _access_responses(e)).items()},
        }
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in _path_names(e.path)]
        params += [{"name": n, "in": "query", "required": bool(s.get("required")),
                    "schema": {k: v for k, v in s.items() if k != "required"}} for n, s in e.query.items()]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": e.body}}}
        if e.footage:
            op["x-liuhen-audited"] = True
        if PUBLIC not in e.access:
            op["security"] = [{"bearer": []}, {"session": []}]
        paths.setdefault(openapi_path(e.path), {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Liuhen case server", "version": version,
                 "description": "Evidence ingest, transparency log, retrieval, accounts and access audit."},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "liuhen_session"},
        }},
    }


def openapi_path(path: str) -> str:
    """An aiohttp route path as an OpenAPI path template: `{name:regex}` becomes `{name}`."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def _access_responses(e: Endpoint) -> dict[int, str]:
    if PUBLIC in e.access:
        return {}
    return {401: "not signed in", 403: "signed in, but this role may not do this"}


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
