"""The upstream `SupportedFeatures` names (kubernetes-sigs/gateway-api, `pkg/features/`) Turnout
claims, as the README's "Conformance" section lists them.

An upstream test runs when every feature it needs is in `SUPPORTED` or `PARTIAL`, else it is
reported SKIP. A claimed feature has no failing test: every test needing only `SUPPORTED`
features must pass. A `PARTIAL` feature is implemented but fails some upstream test; each
such test is a strict xfail naming the gap (test_conformance.py holds both rules)."""

from __future__ import annotations

from collections.abc import Mapping

SUPPORTED: frozenset[str] = frozenset(
    {
        # Gateway profile (HTTP)
        "Gateway",
        "GatewayPort8080",
        "GatewayHTTPListenerIsolation",
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        "HTTPRoute",
        "HTTPRouteBackendRequestHeaderModification",
        "HTTPRouteQueryParamMatching",
        "HTTPRouteMethodMatching",
        "HTTPRouteResponseHeaderModification",
        "HTTPRoutePortRedirect",
        "HTTPRouteSchemeRedirect",
        "HTTPRoutePathRedirect",
        "HTTPRouteHostRewrite",
        "HTTPRoutePathRewrite",
        "HTTPRouteRequestMirror",
        "HTTPRouteRequestMultipleMirrors",
        "HTTPRouteRequestPercentageMirror",
        "HTTPRouteRequestTimeout",
        "HTTPRouteBackendTimeout",
        "HTTPRouteParentRefPort",
        "HTTPRouteNamedRouteRule",
        "HTTPRouteBackendProtocolWebSocket",
        "HTTPRoute303RedirectStatusCode",
        "HTTPRoute307RedirectStatusCode",
        "HTTPRoute308RedirectStatusCode",
        # Mesh profile
        "Mesh",
        "MeshConsumerRoute",
        "MeshHTTPRouteRewritePath",
        "MeshHTTPRouteSchemeRedirect",
        "MeshHTTPRouteRedirectPort",
        "MeshHTTPRouteRedirectPath",
        "MeshHTTPRouteQueryParamMatching",
        "MeshHTTPRouteBackendRequestHeaderModification",
        "MeshHTTPRouteNamedRouteRule",
    }
)

PARTIAL: Mapping[str, str] = {}
