"""The core's error kinds, each carrying the HTTP status the gateway answers it with (``http_status``).

A raising site picks the kind by what went wrong, never by its message: ``NotFoundError`` (404), ``ConflictError``
(409: the request is valid but the current state refuses it), ``InvalidRequestError`` (422: well-formed but wrong
values), ``MalformedRequestError`` (400: cannot be read at all), ``PayloadTooLargeError`` (413) and
``UnavailableError`` (503: a dependency cannot be reached; a retry may help). Anything else is a 500.

Stage errors keep their own names and older bases (``TrafficError`` is still a ``ValueError``) and add one of these
kinds, so existing ``except`` clauses keep working. When a class inherits two kinds, list the one whose status it
should answer with first: ``http_status`` resolves along the MRO, so the most specific kind wins. Foundation:
imports nothing from the core.
"""
from __future__ import annotations

from typing import ClassVar


class LifecycleError(Exception):
    """Base of the core's typed errors; an unexpected failure (HTTP 500) unless a subclass says otherwise."""

    http_status: ClassVar[int] = 500


class InvalidRequestError(LifecycleError):
    """A request (or call) with well-formed but invalid values: names the field and the problem (422)."""

    http_status: ClassVar[int] = 422


class MalformedRequestError(InvalidRequestError):
    """A request that cannot be read at all: not JSON, wrong shape, not a number where one is required (400)."""

    http_status: ClassVar[int] = 400


class PayloadTooLargeError(InvalidRequestError):
    """A request over a size limit (bytes or rows) (413)."""

    http_status: ClassVar[int] = 413


class NotFoundError(LifecycleError):
    """The thing named does not exist (an unknown model, an unregistered or unloaded version) (404)."""

    http_status: ClassVar[int] = 404


class ConflictError(LifecycleError):
    """A valid request the current state refuses (unloading a version that still has traffic) (409)."""

    http_status: ClassVar[int] = 409


class UnavailableError(LifecycleError):
    """Nothing can serve it right now (no version has traffic, the registry is unreachable); retry later (503)."""

    http_status: ClassVar[int] = 503

