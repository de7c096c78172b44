"""Typed kinds (pydantic v2): the only parser of camelCase fields.

`load_documents` reads files into raw `Document`s; `parse_documents` turns them into a
`Resources` snapshot of typed objects, with schema problems as diagnostics.
"""

from __future__ import annotations

from turnout.engine.model.base import ParentReference, Resource
from turnout.engine.model.core import EndpointSlice, Namespace, Pod, Secret, Service
from turnout.engine.model.gateway import Gateway, GatewayClass, ReferenceGrant
from turnout.engine.model.grpcroute import GRPCRoute
from turnout.engine.model.httproute import HTTPRoute
from turnout.engine.model.kinds import Loaded, Resources, parse_document, parse_documents
from turnout.engine.model.loader import Document, load_documents, parse_text
from turnout.engine.model.policy import FaultInjection, XBackendTrafficPolicy

__all__ = [
    "Document",
    "EndpointSlice",
    "FaultInjection",
    "GRPCRoute",
    "Gateway",
    "GatewayClass",
    "HTTPRoute",
    "Loaded",
    "Namespace",
    "ParentReference",
    "Pod",
    "ReferenceGrant",
    "Resource",
    "Resources",
    "Secret",
    "Service",
    "XBackendTrafficPolicy",
    "load_documents",
    "parse_document",
    "parse_documents",
    "parse_text",
]
