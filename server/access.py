"""Which footage a person may see: an officer their own, a supervisor their unit's, and anyone the
footage of the cases they handle. Other roles see footage only through cases they handle."""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, select

from server import api
from server.api import Principal
from server.schema import case_handlers, case_segments, segments


def footage_scope(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause on `segments` selecting exactly the rows `principal` may see."""
    return or_(*footage_scopes(principal))


def footage_scopes(principal: Principal) -> list[ColumnElement[bool]]:
    """The ways `principal` sees footage, one clause each; a row is visible when any holds. Searches query
    each on its own, so each can walk its own index in time order (an OR of them cannot)."""
    if principal.kind != "user":
        return [false()]
    handled = segments.c.id.in_(
        select(case_segments.c.segment_id).join(case_handlers, case_handlers.c.case_id == case_segments.c.case_id)
        .where(case_handlers.c.user_id == principal.id))
    own: list[ColumnElement[bool]] = [handled]
    if principal.role == api.OFFICER and principal.officer_no:
        own.append(segments.c.officer == principal.officer_no)
    if principal.role == api.SUPERVISOR and principal.unit:
        own.append(segments.c.unit == principal.unit)
    return own
