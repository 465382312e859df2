#!/usr/bin/env python3
"""Parity of the two deployment paths: template.yaml (SAM) and the CDK app's synthesized
template (infra/cdk.out/Calseta.template.json, from scripts/cdk-check.sh).

Both must declare the same functions (timeout, memory, reserved concurrency), queues (visibility,
retention, redrive), SQS event-source settings, API routes, alarms (metric each) and outputs.
SAM parameters are compared at their defaults (the CDK config's defaults equal them); resources
that only exist under a non-default condition (MCP, proxy, WAF) are left out on both sides.

    python3 scripts/cdk-parity.py [template.yaml] [infra/cdk.out/Calseta.template.json]

Needs cfn-lint's YAML loader (short-form intrinsics). Exit 1 with the differences listed.
"""
import json
import sys

from cfnlint.decode import decode


def load_sam(path):
    tpl, matches = decode(path)
    if matches:
        sys.exit(f"cdk-parity: cannot parse {path}: {matches}")
    return tpl


def resolver(params):
    def resolve(v):
        if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in params:
            d = params[v["Ref"]].get("Default")
            return int(d) if isinstance(d, str) and d.isdigit() else d
        return v
    return resolve


def ref_name(v):
    """Logical id behind Ref / GetAtt X.Arn, else the value."""
    if isinstance(v, dict):
        if "Ref" in v:
            return v["Ref"]
        if "Fn::GetAtt" in v:
            g = v["Fn::GetAtt"]
            return (g if isinstance(g, list) else g.split("."))[0]
    return v


def sam_view(tpl):
    res = tpl["Resources"]
    r = resolver(tpl.get("Parameters", {}))
    glob = tpl.get("Globals", {}).get("Function", {})
    view = {"functions": {}, "queues": {}, "event_sources": set(), "routes": set(), "alarms": {}, "outputs": set()}
    for lid, x in res.items():
        if x.get("Condition"):
            continue
        p = x.get("Properties", {})
        t = x["Type"]
        if t == "AWS::Serverless::Function":
            view["functions"][lid] = (
                r(p.get("Timeout", glob.get("Timeout"))),
                r(p.get("MemorySize", glob.get("MemorySize"))),
                r(p.get("ReservedConcurrentExecutions")),
            )
            for ev in p.get("Events", {}).values():
                ep = ev.get("Properties", {})
                if ev["Type"] == "SQS":
                    view["event_sources"].add((
                        lid, ref_name(ep["Queue"]), ep.get("BatchSize"), ep.get("MaximumBatchingWindowInSeconds"),
                        tuple(ep.get("FunctionResponseTypes", [])), r(ep.get("ScalingConfig", {}).get("MaximumConcurrency")),
                    ))
                elif ev["Type"] == "Api":
                    view["routes"].add((ep["Path"], ep["Method"].upper(), lid))
        elif t == "AWS::SQS::Queue":
            view["queues"][lid] = (p.get("VisibilityTimeout"), p.get("MessageRetentionPeriod"),
                                   p.get("RedrivePolicy", {}).get("maxReceiveCount"))
        elif t == "AWS::CloudWatch::Alarm":
            view["alarms"][lid] = (p.get("Namespace"), p.get("MetricName"))
    view["outputs"] = {k for k, o in tpl.get("Outputs", {}).items() if not o.get("Condition")}
    return view


def cdk_view(tpl):
    res = tpl["Resources"]
    view = {"functions": {}, "queues": {}, "event_sources": set(), "routes": set(), "alarms": {}, "outputs": set()}
    paths = {}

    def path_of(rid):
        if rid in paths:
            return paths[rid]
        x = res[rid]
        parent = x["Properties"]["ParentId"]
        base = "" if isinstance(parent, dict) and "Fn::GetAtt" in parent else path_of(ref_name(parent))
        paths[rid] = f"{base}/{x['Properties']['PathPart']}"
        return paths[rid]

    for lid, x in res.items():
        p = x.get("Properties", {})
        t = x["Type"]
        if t == "AWS::Lambda::Function":
            view["functions"][lid] = (p.get("Timeout"), p.get("MemorySize"), p.get("ReservedConcurrentExecutions"))
        elif t == "AWS::SQS::Queue":
            view["queues"][lid] = (p.get("VisibilityTimeout"), p.get("MessageRetentionPeriod"),
                                   p.get("RedrivePolicy", {}).get("maxReceiveCount"))
        elif t == "AWS::Lambda::EventSourceMapping":
            view["event_sources"].add((
                ref_name(p["FunctionName"]), ref_name(p["EventSourceArn"]), p.get("BatchSize"),
                p.get("MaximumBatchingWindowInSeconds"), tuple(p.get("FunctionResponseTypes", [])),
                p.get("ScalingConfig", {}).get("MaximumConcurrency"),
            ))
        elif t == "AWS::CloudWatch::Alarm":
            view["alarms"][lid] = (p.get("Namespace"), p.get("MetricName"))
        elif t == "AWS::ApiGateway::Method" and p.get("HttpMethod") != "OPTIONS":
            rid = p["ResourceId"]
            path = "/" if isinstance(rid, dict) and "Fn::GetAtt" in rid else path_of(ref_name(rid))
            uri = json.dumps(p.get("Integration", {}).get("Uri"))
            fn = next((f for f in view_functions(res) if f'"{f}"' in uri), None)
            view["routes"].add((path, p["HttpMethod"], fn))
    view["outputs"] = set(tpl.get("Outputs", {}))
    return view


def view_functions(res):
    return [k for k, v in res.items() if v["Type"] == "AWS::Lambda::Function"]


def main():
    sam_path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    cdk_path = sys.argv[2] if len(sys.argv) > 2 else "infra/cdk.out/Calseta.template.json"
    sam = sam_view(load_sam(sam_path))
    with open(cdk_path) as f:
        cdk = cdk_view(json.load(f))
    problems = []
    for key in sam:
        a, b = sam[key], cdk[key]
        if isinstance(a, dict):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    problems.append(f"{key} {k}: SAM {a.get(k)} vs CDK {b.get(k)}")
        else:
            for x in sorted(a - b, key=str):
                problems.append(f"{key}: only in SAM: {x}")
            for x in sorted(b - a, key=str):
                problems.append(f"{key}: only in CDK: {x}")
    counts = ", ".join(f"{len(sam[k])} {k}" for k in sam)
    if problems:
        print("cdk-parity: the templates differ:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"cdk-parity: same {counts}")


if __name__ == "__main__":
    main()
