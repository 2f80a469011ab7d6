"""Network edge: no internet-wide ingress (except HTTPS to load balancers), IMDSv2 on every node."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.kube import describe, is_ec2_nodeclass
from policies.wire import as_list, quantity, setting, tags_of

SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SECURITY_GROUP: Final = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
"""Adopts a VPC's default group; its inline ingress blocks open it like any group's."""
INGRESS_RULE: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE: Final = "aws:ec2/securityGroupRule:SecurityGroupRule"
LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE: Final = "aws:ec2/instance:Instance"
ANYWHERE: Final = frozenset({"0.0.0.0/0", "::/0"})
WIDEST_PUBLIC_PREFIX: Final = 8
"""A public CIDR with a prefix this short or shorter (0.0.0.0/1, 2000::/3: at least 1/256 of the address space) counts
as the internet; spelling 0.0.0.0/0 as two halves, or ::/0 as ::0/0, is no way around the rule."""


def internet_wide(cidrs: Iterable[Any]) -> bool:
    """Whether any of the CIDRs is the internet: 0.0.0.0/0, ::/0, or a public CIDR of WIDEST_PUBLIC_PREFIX or wider."""
    for cidr in cidrs:
        if cidr is None:
            continue
        if str(cidr) in ANYWHERE:
            return True
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue  # not a CIDR (a placeholder under preview); AWS rejects a malformed one
        if network.prefixlen <= WIDEST_PUBLIC_PREFIX and not network.is_private:
            return True
    return False

_SG_SCHEMA = PolicyConfigSchema(properties={
    "loadBalancerTag": {
        "type": "string", "default": "modelplane.io/load-balancer",
        "description": "Tag key (value 'true') marking a security group or rule that fronts a load balancer; only "
                       "those may admit 0.0.0.0/0, and only on 443/tcp.",
    },
})


def _open_rules(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, rule) for each ingress rule open to the internet, normalized to fromPort/toPort/protocol."""
    props = args.props
    if args.resource_type in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for i, rule in enumerate(as_list(props.get("ingress"))):
            if internet_wide([*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))]):
                yield f"ingress[{i}]", rule
    elif args.resource_type == INGRESS_RULE:
        if internet_wide([props.get("cidrIpv4"), props.get("cidrIpv6")]):
            yield "rule", {**props, "protocol": props.get("ipProtocol")}
    elif (args.resource_type == LEGACY_RULE and props.get("type") == "ingress"
          and internet_wide([*as_list(props.get("cidrBlocks")), *as_list(props.get("ipv6CidrBlocks"))])):
        yield "rule", props


def _https_only(rule: Mapping[str, Any]) -> bool:
    return (str(rule.get("protocol")).lower() in ("tcp", "6") and quantity(rule.get("fromPort")) == 443
            and quantity(rule.get("toPort")) == 443)


def _open_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    tag = setting(args, _SG_SCHEMA, "loadBalancerTag")
    fronts_load_balancer = str(tags_of(args.props).get(tag, "")).lower() == "true"
    for where, rule in _open_rules(args):
        if fronts_load_balancer and _https_only(rule):
            continue
        ports = f"{rule.get('protocol')} {rule.get('fromPort')}-{rule.get('toPort')}"
        report(f"Security group {'rule ' if where == 'rule' else ''}'{args.name}' {where} admits the whole internet or a "
               f"/8-or-wider part of it ({ports}). Fix: restrict the source to the VPC CIDR or a security group; only "
               f"a load balancer tagged {tag}=true may take 0.0.0.0/0, and only on 443/tcp.", args.urn)


_IMDS_SCHEMA = PolicyConfigSchema(properties={
    "maxHopLimit": {
        "type": "integer", "minimum": 1, "maximum": 64, "default": 1,
        "description": "Highest httpPutResponseHopLimit allowed; 1 keeps pods (one hop away) from node credentials.",
    },
})


def _metadata_options(args: ResourceValidationArgs) -> tuple[str, Mapping[str, Any]] | None:
    if args.resource_type in (LAUNCH_TEMPLATE, INSTANCE):
        options = args.props.get("metadataOptions")
        return f"{args.resource_type.rsplit(':', 1)[-1]} '{args.name}'", options if isinstance(options, Mapping) else {}
    if is_ec2_nodeclass(args.props):
        spec = args.props.get("spec") or {}
        # Karpenter's v1 defaults (CRD): httpTokens required, hop limit 1, so an absent block is compliant.
        defaults = {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        return describe(args.props, args.name), {**defaults, **(spec.get("metadataOptions") or {})}
    return None


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = _metadata_options(args)
    if found is None:
        return
    what, options = found
    if options.get("httpEndpoint") == "disabled":
        return
    problems = []
    if options.get("httpTokens") != "required":
        problems.append(f"httpTokens is {options.get('httpTokens') or 'unset (IMDSv1 allowed)'}")
    hops = quantity(options.get("httpPutResponseHopLimit"))
    limit = setting(args, _IMDS_SCHEMA, "maxHopLimit")
    if hops is not None and hops > limit:
        problems.append(f"httpPutResponseHopLimit is {int(hops)} (max {limit})")
    if problems:
        report(f"{what}: {'; '.join(problems)}, so a compromised pod can steal the node's credentials. Fix: set "
               f"metadata_options http_tokens='required' and http_put_response_hop_limit={limit} "
               f"(EC2NodeClass: spec.metadataOptions).", args.urn)


SG_NO_OPEN_INGRESS = ResourceValidationPolicy(
    name="sg-no-open-ingress",
    description="No security group admits 0.0.0.0/0 or ::/0 (or a public CIDR of /8 or wider), except 443/tcp on a "
                "load balancer's.",
    validate=_open_ingress, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_SG_SCHEMA,
    url="https://docs.aws.amazon.com/securityhub/latest/userguide/ec2-controls.html#ec2-18",
)
IMDSV2_REQUIRED = ResourceValidationPolicy(
    name="imdsv2-required",
    description="Launch templates, instances and Karpenter EC2NodeClasses require IMDSv2 with a hop limit of 1.",
    validate=_imdsv2, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_IMDS_SCHEMA,
    url="https://docs.aws.amazon.com/eks/latest/best-practices/identity-and-access-management.html",
)

POLICIES: Final = (SG_NO_OPEN_INGRESS, IMDSV2_REQUIRED)
"""The network rules."""
