#!/usr/bin/env python3
"""Builds scripts/run.sh's machine-readable report (`run.sh --json`) from the files that run
wrote under its demo directory: the image's digests, each agent's summary line, every policy
decision from the verified log dump, what reached each tool server, the inference proxy
(identity, the monitor's verification, its /health counters), and every verifier
command with its verdict. Only what those files say; nothing is filled in. Standard library."""

import json
import os
import re
import sys


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def main():
    demo = sys.argv[1]
    image_build = read(os.path.join(demo, "image-build.out"))
    image = {}
    m = re.search(r"^sha256:\s+([0-9a-f]{64})", image_build, re.M)
    if m:
        image["sha256"] = m.group(1)
    m = re.search(r"^snp digest:\s+([0-9a-f]{96})\s*\((.*)\)", image_build, re.M)
    if m:
        image["snp_launch_digest"] = m.group(1)
        image["vm_shape"] = m.group(2)

    run = read(os.path.join(demo, "omega-run.out"))
    agents = []
    for m in re.finditer(r"omega: agent summary: (\S+) status=(.*?) fuel=(\d+) restarts=(\d+) "
                         r"allowed=(\d+) denied=(\d+)", run):
        agents.append({"name": m.group(1), "status": m.group(2), "fuel": int(m.group(3)),
                       "restarts": int(m.group(4)), "allowed": int(m.group(5)),
                       "denied": int(m.group(6))})

    decisions = []
    verbs = {"data": "read", "message": "send", "tool": "call", "infer": "infer"}
    for line in read(os.path.join(demo, "verify-log.out")).splitlines():
        f = line.split()
        if len(f) < 6 or not f[0].isdigit() or f[2] == "lifecycle" or "rule=" not in line:
            continue
        kv = dict(x.split("=", 1) for x in f[3:] if "=" in x)
        decisions.append({"entry": int(f[0]), "agent": kv.get("agent"),
                          "action": verbs.get(f[2], f[2]), "target": kv.get("target"),
                          "decision": next((x for x in f if x in ("allow", "deny", "confirm")), None),
                          "rule": kv.get("rule")})

    tool_servers = {}
    tools_dir = os.path.join(demo, "tools")
    for name in ("fhir", "calendar", "mail"):
        log = read(os.path.join(tools_dir, f"{name}.requests.log"))
        tool_servers[name] = {"tools_call_received": log.count('"tools/call"')}

    # The inference proxy: what run.sh started (its own log), what the monitor verified (its
    # console) and what the proxy served (its /health).
    proxy_log = read(os.path.join(demo, "proxy.out"))
    inference = {}
    m = re.search(r'proxy "sha256:([0-9a-f]{64})"', proxy_log)
    if m:
        inference["proxy_identity"] = m.group(1)
    m = re.search(r"evidence-bound TLS ([0-9.:]+)", proxy_log)
    if m:
        inference["tls_address"] = m.group(1)
    m = re.search(r"omega: inference: proxy verified: (.*)", run)
    inference["verified_by_monitor"] = m.group(1).strip() if m else None
    inference["session_failures"] = re.findall(r"omega: inference: proxy session (?:refused|failed|broken): (.*)", run)
    m = re.search(r'omega: agent triage \[info\]: "(model .*?)"', run)
    inference["triage_model_answer"] = m.group(1) if m else None
    try:
        inference["proxy_health"] = json.loads(read(os.path.join(demo, "proxy-health.json")) or "{}")
    except ValueError:
        inference["proxy_health"] = {}

    verifications = []
    for entry in json.loads(read(os.path.join(demo, "verifications.json")) or "[]"):
        verifications.append(entry)

    report = {
        "image": image,
        "tee": "none (plain QEMU: the evidence is unattested)",
        "nonce": read(os.path.join(demo, "log", "nonce.hex")).strip(),
        "agents": agents,
        "decisions": decisions,
        "tool_servers": tool_servers,
        "inference": inference,
        "verifications": verifications,
        "all_verified": bool(verifications) and all(v["verdict"].startswith("VERIFIED")
                                                    for v in verifications),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
