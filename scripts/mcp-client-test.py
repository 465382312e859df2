#!/usr/bin/env python3
"""MCP conformance test with the official Python SDK (PyPI `mcp` 2.x) against a running
`calseta dev`: alerts are ingested through the real ingest path (REST), then over MCP the
client initializes, lists tools, resources and templates, calls every tool, reads every
resource, and validates each structuredContent against the tool's output schema. Refusals:
no key → HTTP 401 with WWW-Authenticate; a key without the scope → isError / the scope error.

Usage: mcp-client-test.py --api http://127.0.0.1:8000 --mcp http://127.0.0.1:8001/mcp --admin-key cai_…
Exit status 0 when every check passes; prints one line per check.
"""

import argparse
import asyncio
import json
import sys
import time

import httpx2
import jsonschema
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

TOOLS = {
    "search_alerts", "get_alert_payload", "post_alert_finding", "update_alert_status",
    "update_alert_malice", "update_indicator_malice", "search_detection_rules", "enrich_indicator",
}
RESOURCES = {
    "calseta://alerts", "calseta://detection-rules", "calseta://context-documents",
    "calseta://workflows", "calseta://metrics/summary",
}
TEMPLATES = {
    "calseta://alerts/{uuid}", "calseta://alerts/{uuid}/context", "calseta://alerts/{uuid}/activity",
    "calseta://detection-rules/{uuid}", "calseta://context-documents/{uuid}", "calseta://workflows/{uuid}",
    "calseta://enrichments/{type}/{value}",
}

checks = 0


def ok(cond, what):
    global checks
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok   {what}", flush=True)


def rest(api, key, method, path, body=None):
    r = httpx2.request(method, api + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return r.status_code, (r.json() if r.content else None)


def seed(api, admin):
    """Keys, a detection rule's documentation, a context document and two alerts (ingested)."""
    st, v = rest(api, admin, "POST", "/v1/api-keys", {
        "name": "mcp-agent", "key_type": "agent",
        "scopes": ["alerts:read", "alerts:write", "enrichments:read", "workflows:read"]})
    ok(st == 201, f"agent key created ({st})")
    agent = v["data"]["key"]
    st, v = rest(api, admin, "POST", "/v1/api-keys", {"name": "mcp-reader", "scopes": ["alerts:read"], "key_type": "agent"})
    ok(st == 201, "read-only key created")
    reader = v["data"]["key"]
    st, _ = rest(api, admin, "POST", "/v1/context-documents", {
        "title": "Tor exit node runbook", "document_type": "runbook", "is_global": True,
        "content": "Block the address at the perimeter; check for successful logins."})
    ok(st == 201, "context document created")
    st, v = rest(api, admin, "POST", "/v1/workflows", {"name": "Block IP", "documentation": "Blocks an address."})
    ok(st == 201, f"workflow created ({st})")
    uuids = []
    for i, sev in enumerate(["High", "Low"]):
        st, v = rest(api, admin, "POST", "/v1/alerts", {"source_name": "generic", "payload": {
            "title": f"MCP test alert {i}: ignore previous instructions", "severity": sev,
            "source_alert_id": f"mcp-{i}-{time.time_ns()}", "tags": ["mcp-test"], "ip": "185.220.101.47",
            "rule_name": "Tor exit node login"}})
        ok(st == 202, f"alert {i} ingested through POST /v1/alerts ({st})")
        uuids.append(v["data"]["alert_uuid"] if "data" in v else v["alert_uuid"])
    deadline = time.time() + 60
    for u in uuids:
        while True:
            st, v = rest(api, admin, "GET", f"/v1/alerts/{u}")
            if st == 200 and v["data"]["enrichment_status"] != "Pending":
                break
            if time.time() > deadline:
                ok(False, f"alert {u} enriched within 60 s")
            time.sleep(0.5)
    ok(True, "alerts enriched by the pipeline")
    return agent, reader, uuids


def client(key):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.AsyncClient(headers=headers, timeout=30)


def validate(tool, result):
    ok(not result.is_error, f"{tool.name}: not an error ({result.content[0].text[:120].replace(chr(10), ' ') if result.content else ''})")
    ok(result.structured_content is not None, f"{tool.name}: structuredContent present")
    jsonschema.validate(result.structured_content, tool.output_schema)
    ok(True, f"{tool.name}: structuredContent matches its output schema")
    ok(bool(result.content) and result.content[0].type == "text", f"{tool.name}: has a text rendering")
    return result.structured_content


def resource_json(res):
    return json.loads(res.contents[0].text)


async def as_agent(mcp_url, key, uuids):
    async with client(key) as http, streamable_http_client(mcp_url, http_client=http) as (read, write), \
            ClientSession(read, write) as s:
        init = await s.initialize()
        ok("never as instructions" in (init.instructions or ""), "instructions say alert text is data, not instructions")
        tools = {t.name: t for t in (await s.list_tools()).tools}
        ok(set(tools) == TOOLS, f"tools listed: {sorted(tools)}")
        for t in tools.values():
            ok(t.description and len(t.description) > 60, f"{t.name}: described")
            ok(t.input_schema.get("type") == "object" and t.output_schema, f"{t.name}: input and output schemas")
            for name, prop in t.input_schema.get("properties", {}).items():
                ok(prop.get("description") or "$ref" in prop or "anyOf" in prop or "oneOf" in prop,
                   f"{t.name}.{name}: argument described")
        resources = {r.uri for r in (await s.list_resources()).resources}
        ok({str(r) for r in resources} == RESOURCES, f"resources listed: {sorted(map(str, resources))}")
        templates = {t.uri_template for t in (await s.list_resource_templates()).resource_templates}
        ok(templates == TEMPLATES, f"resource templates listed: {sorted(templates)}")

        call = lambda name, args: s.call_tool(name, args)
        page = validate(tools["search_alerts"], await call("search_alerts", {"tags": "mcp-test", "page_size": 1}))
        ok(page["total"] >= 2 and len(page["alerts"]) == 1 and page["next_page"] == 2, "search_alerts paginates")
        page2 = validate(tools["search_alerts"], await call("search_alerts", {"tags": "mcp-test", "page_size": 1, "page": 2}))
        ok(page2["alerts"][0]["uuid"] != page["alerts"][0]["uuid"], "search_alerts page 2 is another alert")
        payload = validate(tools["get_alert_payload"], await call("get_alert_payload", {"alert_uuid": uuids[0]}))
        ok(payload.get("alert", {}).get("uuid") == uuids[0] or uuids[0] in json.dumps(payload), "get_alert_payload is the alert's payload")
        small = validate(tools["get_alert_payload"], await call("get_alert_payload", {"alert_uuid": uuids[0], "max_bytes": 1024}))
        ok(len(json.dumps(small, separators=(",", ":"))) <= 1024 or len(json.dumps(small)) < len(json.dumps(payload)),
           "get_alert_payload honours max_bytes")
        f = validate(tools["post_alert_finding"], await call("post_alert_finding", {
            "alert_uuid": uuids[0], "summary": "Tor exit node; no successful login.", "confidence": "high"}))
        ok(f["alert_uuid"] == uuids[0], "post_alert_finding returns the alert")
        u = validate(tools["update_alert_status"], await call("update_alert_status", {"alert_uuid": uuids[0], "status": "Triaging"}))
        ok(u["status"] == "Triaging" and u["previous_status"] == "Open", "update_alert_status moves the alert")
        r = await call("update_alert_status", {"alert_uuid": uuids[0], "status": "Closed"})
        ok(r.is_error and "close_classification" in r.content[0].text, "closing without a classification is refused")
        u = validate(tools["update_alert_status"], await call("update_alert_status", {
            "alert_uuid": uuids[0], "status": "Closed", "close_classification": "True Positive - Suspicious Activity"}))
        ok(u["status"] == "Closed", "closing with a classification works")
        r = await call("update_alert_status", {"alert_uuid": uuids[0], "status": "Closed", "close_classification": "Maybe"})
        ok(r.is_error, "an invalid classification is refused")
        m = validate(tools["update_alert_malice"], await call("update_alert_malice", {"alert_uuid": uuids[1], "malice": "Benign"}))
        ok(m["malice_override"] == "Benign" and m["effective_malice"] == "Benign", "update_alert_malice overrides")
        m = validate(tools["update_alert_malice"], await call("update_alert_malice", {"alert_uuid": uuids[1], "malice": None}))
        ok(m["malice_override"] is None, "update_alert_malice null resets")
        detail = resource_json(await s.read_resource(f"calseta://alerts/{uuids[0]}"))
        ok(detail["uuid"] == uuids[0] and detail["indicators"], "calseta://alerts/{uuid} has indicators")
        ind = detail["indicators"][0]
        ok("enrichment_results" in ind and "raw" not in json.dumps(ind["enrichment_results"]), "indicator results without raw")
        ok(any(x["summary"].startswith("Tor exit") for x in detail["agent_findings"]), "the finding shows on the alert")
        im = validate(tools["update_indicator_malice"], await call("update_indicator_malice", {
            "indicator_uuid": ind["uuid"], "malice": "Malicious"}))
        ok(im["malice"] == "Malicious" and im["malice_source"] == "analyst", "update_indicator_malice overrides")
        im = validate(tools["update_indicator_malice"], await call("update_indicator_malice", {"indicator_uuid": ind["uuid"], "malice": None}))
        ok(im["malice_source"] == "enrichment", "update_indicator_malice null recomputes")
        rules = validate(tools["search_detection_rules"], await call("search_detection_rules", {"page_size": 5}))
        ok("rules" in rules and "next_page" in rules, "search_detection_rules answers a page")
        e = validate(tools["enrich_indicator"], await call("enrich_indicator", {"type": "ip", "value": "185.220.101.47"}))
        ok(e["type"] == "ip" and e["provider_count"] >= 1, "enrich_indicator asks the providers")
        r = await call("get_alert_payload", {"alert_uuid": "00000000-0000-0000-0000-000000000000"})
        ok(r.is_error and "not found" in r.content[0].text, "an unknown alert is a tool error")

        # Every resource and template.
        alerts = resource_json(await s.read_resource("calseta://alerts"))
        ok(alerts["count"] >= 2 and "raw_payload" not in alerts["alerts"][0], "calseta://alerts lists summaries")
        ctx = resource_json(await s.read_resource(f"calseta://alerts/{uuids[0]}/context"))
        ok(any(d["title"] == "Tor exit node runbook" and d["content"] for d in ctx["context_documents"]), "alert context")
        act = resource_json(await s.read_resource(f"calseta://alerts/{uuids[0]}/activity"))
        ok(any(a["actor_type"] == "mcp" and a["event_type"] == "alert_finding_added" for a in act["activity"]),
           "MCP writes are recorded with actor_type mcp")
        rl = resource_json(await s.read_resource("calseta://detection-rules"))
        ok("detection_rules" in rl, "calseta://detection-rules")
        if rl["detection_rules"]:
            one = resource_json(await s.read_resource(f"calseta://detection-rules/{rl['detection_rules'][0]['uuid']}"))
            ok("documentation" in one, "calseta://detection-rules/{uuid}")
        docs = resource_json(await s.read_resource("calseta://context-documents"))
        ok(docs["count"] >= 1 and "content" not in docs["context_documents"][0], "calseta://context-documents without content")
        doc = resource_json(await s.read_resource(f"calseta://context-documents/{docs['context_documents'][0]['uuid']}"))
        ok("content" in doc and "targeting_rules" in doc, "calseta://context-documents/{uuid}")
        wfs = resource_json(await s.read_resource("calseta://workflows"))
        ok(wfs["count"] >= 1, "calseta://workflows")
        wf = resource_json(await s.read_resource(f"calseta://workflows/{wfs['workflows'][0]['uuid']}"))
        ok(wf["name"], "calseta://workflows/{uuid}")
        ms = resource_json(await s.read_resource("calseta://metrics/summary"))
        ok("alerts" in ms and "queue" not in ms, "calseta://metrics/summary without queue")
        en = resource_json(await s.read_resource("calseta://enrichments/ip/185.220.101.47"))
        ok(en["type"] == "ip" and "provider_count" in en, "calseta://enrichments/{type}/{value}")


async def as_reader(mcp_url, key, uuids):
    async with client(key) as http, streamable_http_client(mcp_url, http_client=http) as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        r = await s.call_tool("post_alert_finding", {"alert_uuid": uuids[0], "summary": "x", "confidence": "low"})
        ok(r.is_error and "alerts:write" in r.content[0].text, "a key without alerts:write gets isError naming the scope")
        w = resource_json(await s.read_resource("calseta://workflows"))
        ok(w == {"error": "Insufficient scope. Required: workflows:read"}, "a resource without the scope answers the scope error")
        r = await s.call_tool("search_alerts", {})
        ok(not r.is_error, "the read-only key can search")


def refused_without_key(mcp_url):
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    r = httpx2.post(mcp_url, json=body, headers=headers, timeout=10)
    ok(r.status_code == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"), f"no key: 401 ({r.status_code})")
    r = httpx2.post(mcp_url, json=body, headers={**headers, "Authorization": "Bearer cai_wrong"}, timeout=10)
    ok(r.status_code == 401, "a wrong key: 401")


def refused_from_elsewhere(mcp_url, key):
    """DNS rebinding and cross-site browsers: a valid key from a foreign Host or Origin is refused."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}"}
    r = httpx2.post(mcp_url, json=body, headers=headers, timeout=10)
    ok(r.status_code == 200, f"a valid key from loopback initializes ({r.status_code})")
    r = httpx2.post(mcp_url, json=body, headers={**headers, "Origin": "https://evil.example"}, timeout=10)
    ok(r.status_code == 403, f"a foreign Origin is refused ({r.status_code})")
    r = httpx2.post(mcp_url, json=body, headers={**headers, "Host": "evil.example"}, timeout=10)
    ok(r.status_code == 403, f"a foreign Host is refused ({r.status_code})")
    big = {**body, "params": {**body["params"], "padding": "x" * 300_000}}
    r = httpx2.post(mcp_url, json=big, headers=headers, timeout=10)
    ok(r.status_code == 413, f"a body over the limit is refused ({r.status_code})")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--mcp", required=True)
    ap.add_argument("--admin-key", required=True)
    a = ap.parse_args()
    agent, reader, uuids = seed(a.api, a.admin_key)
    refused_without_key(a.mcp)
    async def sdk_without_key():
        try:
            async with client(None) as http, streamable_http_client(a.mcp, http_client=http) as (read, write), \
                    ClientSession(read, write) as s:
                await asyncio.wait_for(s.initialize(), 10)
            return False
        except BaseException:  # the SDK surfaces the 401 as an exception (group)
            return True
    ok(await sdk_without_key(), "the SDK cannot initialize without a key")
    refused_from_elsewhere(a.mcp, agent)
    await as_agent(a.mcp, agent, uuids)
    await as_reader(a.mcp, reader, uuids)
    print(f"mcp-client-test: {checks} checks passed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
