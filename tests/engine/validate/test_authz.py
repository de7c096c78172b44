"""Built-in rules of the authorization kinds (`engine.validate.authz`) and the shipped CRDs.

Each bad case is checked twice: through the built-in rules alone (what the Kubernetes source
runs) and through `validate_paths` with Turnout's own `crds/` (what `mesh validate` runs), and
both must refuse it with the same one-line message at the same field."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.engine.diagnostics import Severity
from turnout.engine.model import parse_text
from turnout.engine.model.kinds import parse_documents
from turnout.engine.pipeline import OWN_CRDS
from turnout.engine.validate import validate_paths, validate_resources

L = "policy.linkerd.io"


def doc(api: str, kind: str, spec: str) -> str:
    return (
        f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: p, namespace: shop}}\nspec: {spec}\n"
    )


CASES = [
    pytest.param(
        doc(f"{L}/v1beta1", "ServerAuthorization", "{server: {}, client: {unauthenticated: true}}"),
        "spec.server",
        "exactly one of server.name and server.selector must be set",
        id="serverauthorization-names-no-server",
    ),
    pytest.param(
        doc(
            f"{L}/v1beta1",
            "ServerAuthorization",
            "{server: {name: s}, client: {unauthenticated: true, meshTLS: {identities: ['*']}}}",
        ),
        "spec.client",
        "exactly one of unauthenticated and meshTLS must be set",
        id="serverauthorization-unauthenticated-and-meshtls",
    ),
    pytest.param(
        doc(
            f"{L}/v1beta1",
            "ServerAuthorization",
            "{server: {name: s}, client: {meshTLS: {unauthenticatedTLS: true, identities: [a]}}}",
        ),
        "spec.client.meshTLS",
        "unauthenticatedTLS must not be set with identities or serviceAccounts",
        id="serverauthorization-unauthenticatedtls-with-identities",
    ),
    pytest.param(
        doc(
            f"{L}/v1alpha1",
            "AuthorizationPolicy",
            "{targetRef: {group: apps, kind: Deployment, name: web}, requiredAuthenticationRefs: []}",
        ),
        "spec.targetRef.kind",
        "targetRef apps/Deployment is not supported (Server, HTTPRoute, GRPCRoute or Namespace)",
        id="authorizationpolicy-target-kind-unsupported",
    ),
    pytest.param(
        doc(
            f"{L}/v1alpha1",
            "AuthorizationPolicy",
            "{targetRef: {kind: Namespace, name: other}, requiredAuthenticationRefs: []}",
        ),
        "spec.targetRef.name",
        "a Namespace target must be the policy's own namespace (shop)",
        id="authorizationpolicy-other-namespace",
    ),
    pytest.param(
        doc(
            f"{L}/v1alpha1",
            "AuthorizationPolicy",
            "{targetRef: {group: policy.linkerd.io, kind: Server, name: s}, requiredAuthenticationRefs:"
            " [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: m}, {kind: ServiceAccount, name: sa}]}",
        ),
        "spec.requiredAuthenticationRefs[1]",
        "MeshTLSAuthentication and ServiceAccount must not be used together",
        id="authorizationpolicy-meshtls-and-serviceaccount",
    ),
    pytest.param(
        doc(f"{L}/v1alpha1", "MeshTLSAuthentication", "{}"),
        "spec",
        "exactly one of identities and identityRefs must be set",
        id="meshtls-neither",
    ),
    pytest.param(
        doc(f"{L}/v1alpha1", "MeshTLSAuthentication", "{identityRefs: [{kind: Pod}]}"),
        "spec.identityRefs[0].kind",
        "identityRef core/Pod is not supported (ServiceAccount or Namespace)",
        id="meshtls-ref-kind",
    ),
    pytest.param(
        doc(
            f"{L}/v1alpha1",
            "NetworkAuthentication",
            "{networks: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]}",
        ),
        "spec.networks[0].except[0]",
        "11.0.0.0/8 is not inside 10.0.0.0/8",
        id="network-except-outside",
    ),
    pytest.param(
        doc(f"{L}/v1alpha1", "NetworkAuthentication", "{networks: [{cidr: ten}]}"),
        "spec.networks[0].cidr",
        'Invalid value: "ten": not a CIDR',
        id="network-not-a-cidr",
    ),
    pytest.param(
        doc(f"{L}/v1beta3", "Server", "{port: 80}"),
        "spec",
        "exactly one of podSelector and externalWorkloadSelector must be set",
        id="server-no-selector",
    ),
    pytest.param(
        doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "{selector: {matchLabels: {app: a}}, targetRefs: [{kind: Service, name: a}]}",
        ),
        "spec",
        "only one of targetRefs or selector can be set",
        id="istio-selector-and-targetrefs",
    ),
    pytest.param(
        doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "{rules: [{from: [{source: {serviceAccounts: [a/b], namespaces: [a]}}]}]}",
        ),
        "spec.rules[0].from[0].source",
        "Cannot set serviceAccounts with namespaces or principals",
        id="istio-serviceaccounts-with-namespaces",
    ),
    pytest.param(
        doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "{rules: [{when: [{key: experimental.envoy.filters.x, values: [a]}]}]}",
        ),
        "spec.rules[0].when[0].key",
        'condition key "experimental.envoy.filters.x" is not supported by Turnout',
        id="istio-when-key-unsupported",
    ),
    pytest.param(
        doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "{rules: [{to: [{operation: {ports: [http]}}]}]}",
        ),
        "spec.rules[0].to[0].operation.ports[0]",
        'Invalid value: "http": must be a port number (1-65535)',
        id="istio-port-not-a-number",
    ),
    pytest.param(
        doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "{rules: [{when: [{key: source.ip, values: [10.0.0.0/33]}]}]}",
        ),
        "spec.rules[0].when[0].values[0]",
        'Invalid value: "10.0.0.0/33": not an IP address or CIDR',
        id="istio-when-source-ip-not-a-cidr",
    ),
]


def errors_of(diags: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(d.pos.path, d.message) for d in diags if d.severity is Severity.ERROR}


@pytest.mark.parametrize(("text", "path", "message"), CASES)
def test_built_in_rules_refuse(text: str, path: str, message: str) -> None:
    docs, _ = parse_text(text, file="p.yaml")
    resources, diags = parse_documents(docs)
    diags += validate_resources(resources)
    assert (path, message) in errors_of(diags)


@pytest.mark.parametrize(("text", "path", "message"), CASES)
def test_mesh_validate_refuses_once(text: str, path: str, message: str, tmp_path: Path) -> None:
    """With the shipped CRDs too, the finding is reported once (same words on both paths)."""
    file = tmp_path / "p.yaml"
    file.write_text(text)
    report = validate_paths([str(file)], crds=[str(OWN_CRDS)])
    found = [d for d in report.diagnostics if d.severity is Severity.ERROR]
    assert [(d.pos.path, d.message) for d in found if d.pos.path == path].count(
        (path, message)
    ) == 1


VALID = [
    doc(
        f"{L}/v1beta1",
        "Server",
        "{podSelector: {matchLabels: {app: web}}, port: http, proxyProtocol: HTTP/1}",
    ),
    doc(f"{L}/v1beta2", "Server", "{externalWorkloadSelector: {}, port: 8080}"),
    doc(f"{L}/v1beta3", "Server", "{podSelector: {}, port: 8080, accessPolicy: audit}"),
    doc(
        f"{L}/v1beta1",
        "ServerAuthorization",
        "{server: {selector: {matchLabels: {a: b}}}, client: {meshTLS: {serviceAccounts: [{name: x}],"
        " identities: ['*.ns.serviceaccount.identity.linkerd.cluster.local']}, networks: [{cidr: '::/0'}]}}",
    ),
    doc(
        f"{L}/v1alpha1",
        "MeshTLSAuthentication",
        "{identityRefs: [{kind: Namespace, name: a}, {kind: ServiceAccount}]}",
    ),
    doc(
        f"{L}/v1alpha1",
        "NetworkAuthentication",
        "{networks: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]}",
    ),
    doc("security.istio.io/v1", "AuthorizationPolicy", "{}"),
    doc(
        "security.istio.io/v1beta1",
        "AuthorizationPolicy",
        "{action: DENY, rules: [{to: [{operation: {paths: [/admin*]}}]}]}",
    ),
    doc(
        "security.istio.io/v1",
        "PeerAuthentication",
        "{selector: {matchLabels: {a: b}}, portLevelMtls: {'8080': {mode: DISABLE}}}",
    ),
    doc(
        "security.istio.io/v1",
        "RequestAuthentication",
        "{jwtRules: [{issuer: a, jwksUri: 'https://x/jwks'}]}",
    ),
]


@pytest.mark.parametrize("text", VALID, ids=lambda t: t.split("\n")[1].removeprefix("kind: "))
def test_valid_objects_pass_both_paths(text: str, tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(text)
    report = validate_paths([str(file)], crds=[str(OWN_CRDS)])
    assert [d for d in report.diagnostics if d.severity is not Severity.INFO] == []
    assert len(report.resources.objects) == 1


def test_linkerd_and_istio_policies_of_one_name_are_two_objects() -> None:
    text = doc(
        f"{L}/v1alpha1",
        "AuthorizationPolicy",
        "{targetRef: {kind: Namespace, name: shop}, requiredAuthenticationRefs: []}",
    )
    text += "---\n" + doc("security.istio.io/v1", "AuthorizationPolicy", "{}")
    docs, _ = parse_text(text, file="p.yaml")
    resources, diags = parse_documents(docs)
    assert diags == []
    assert sorted(o.obj.api_version for o in resources.objects) == [
        "policy.linkerd.io/v1alpha1",
        "security.istio.io/v1",
    ]
