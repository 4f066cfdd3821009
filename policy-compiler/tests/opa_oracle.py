#!/usr/bin/env python3
"""Test-only oracle: evaluates a Rego module with real OPA (PyPI opa-golib-python-bindings).

Reads one JSON object from stdin: {"rego": "<module>", "document": "omega.policy.decision",
"inputs": [<input>, ...]} and writes one JSON array to stdout, one decision per input
(null where the document is undefined). Exits non-zero if OPA rejects the module.
"""
import json
import sys

from opa_bindings import OpaEngine, OpaUndefinedError


def main() -> int:
    job = json.load(sys.stdin)
    out = []
    with OpaEngine() as engine:
        engine.add_policy("policy.rego", job["rego"])
        for item in job["inputs"]:
            try:
                out.append(engine.eval_document(job["document"], item))
            except OpaUndefinedError:
                out.append(None)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
