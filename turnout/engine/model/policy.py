"""Policy kinds: our `FaultInjection` (policy.turnout.dev/v1alpha1) and the experimental
`XBackendTrafficPolicy` (gateway.networking.x-k8s.io/v1alpha1, GEP-3388) for retry budgets.

A FaultInjection is referenced from an HTTPRoute/GRPCRoute rule by an ExtensionRef filter
``{group: policy.turnout.dev, kind: FaultInjection, name: ...}``; its schema is
`crds/policy.turnout.dev_faultinjections.yaml`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt

from turnout.engine.model.base import (
    Duration,
    Group,
    K8sModel,
    Kind,
    Name,
    Resource,
    SectionName,
)
from turnout.engine.model.httproute import SessionPersistence

Percent = Annotated[StrictInt, Field(ge=0, le=100)]


class FaultDelaySpec(K8sModel):
    fixed_delay: Duration
    percentage: Percent = 100


class FaultAbortSpec(K8sModel):
    http_status: Annotated[StrictInt, Field(ge=200, le=599)] | None = None
    grpc_status: Annotated[StrictInt, Field(ge=1, le=16)] | None = None
    percentage: Percent = 100


class FaultInjectionSpec(K8sModel):
    delay: FaultDelaySpec | None = None
    abort: FaultAbortSpec | None = None


class FaultInjection(Resource):
    kind: Literal["FaultInjection"] = "FaultInjection"
    spec: FaultInjectionSpec


class PolicyTargetReference(K8sModel):
    group: Group
    kind: Kind
    name: Name
    section_name: SectionName | None = None


class BudgetDetails(K8sModel):
    percent: Percent = 20
    interval: Duration = "10s"


class RequestRate(K8sModel):
    count: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    interval: Duration | None = None


class RetryConstraint(K8sModel):
    budget: BudgetDetails = Field(default_factory=BudgetDetails)
    min_retry_rate: RequestRate = Field(
        default_factory=lambda: RequestRate(count=10, interval="1s")
    )


class XBackendTrafficPolicySpec(K8sModel):
    target_refs: list[PolicyTargetReference] = Field(min_length=1, max_length=16)
    retry_constraint: RetryConstraint | None = None
    session_persistence: SessionPersistence | None = None


class XBackendTrafficPolicy(Resource):
    kind: Literal["XBackendTrafficPolicy"] = "XBackendTrafficPolicy"
    spec: XBackendTrafficPolicySpec
