#!/usr/bin/env python3
"""N concurrent chat completions against a running omega-proxy (or any OpenAI-compatible
server): wall time, per-request latency and aggregate completion tokens/s, for N = 1 and N.
Standard library only.
  python3 scripts/proxy-concurrency.py http://127.0.0.1:8080 MODEL [N] [MAX_TOKENS]
"""
import json, sys, threading, time, urllib.request

base, model = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 32


def one(i, out):
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": f"Tell me a fact about the number {i}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=600) as r:
        reply = json.load(r)
    out[i] = (time.monotonic() - t, reply["usage"]["completion_tokens"])


def run(k):
    out = [None] * k
    threads = [threading.Thread(target=one, args=(i, out)) for i in range(k)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    tokens = sum(o[1] for o in out)
    lat = sorted(o[0] for o in out)
    print(f"N={k:2d}  wall {wall:6.2f} s  tokens {tokens:4d}  aggregate {tokens / wall:6.1f} tok/s"
          f"  latency min {lat[0]:5.2f} s  max {lat[-1]:5.2f} s")


run(1)
run(n)
