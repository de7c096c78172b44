"""The upstream `SupportedFeatures` names Turnout claims (kubernetes-sigs/gateway-api,
`pkg/features/`): an upstream test runs only when every feature it needs is here, and then
it must pass. The README's "Conformance" section lists the same names."""

from __future__ import annotations

SUPPORTED: frozenset[str] = frozenset(
    {
        # Gateway profile
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
        "HTTPRouteRequestTimeout",
        "HTTPRouteBackendTimeout",
        "HTTPRouteParentRefPort",
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
    }
)
