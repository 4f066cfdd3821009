"""Checks Omega's agent cards with the official A2A Python SDK (a2a-sdk, bench/a2a/requirements.txt).

Usage: a2a_sdk_verify.py CARD.json PUBLIC_KEY_HEX
Parses the card into the SDK's AgentCard (protobuf JSON, unknown fields refused) and
verifies its signature with the SDK's own verifier (RFC 8785 canonical form, JWS, EdDSA).
Prints `verified` or `refused: REASON`; exits 0 in both cases, 2 when the card does not parse.
"""

import base64
import sys

from a2a.types import AgentCard
from a2a.utils.signing import SignatureVerificationError, create_signature_verifier
from google.protobuf import json_format
from jwt.api_jwk import PyJWK


def main() -> int:
    text = open(sys.argv[1], encoding="utf-8").read()
    public = bytes.fromhex(sys.argv[2])
    try:
        card = json_format.Parse(text, AgentCard())
    except json_format.ParseError as e:
        print(f"does not parse: {e}")
        return 2
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    jwk = PyJWK({"kty": "OKP", "crv": "Ed25519", "x": x})
    verify = create_signature_verifier(lambda kid, jku: jwk, ["EdDSA"])
    try:
        verify(card)
    except SignatureVerificationError as e:
        print(f"refused: {e}")
        return 0
    print(f"verified {card.name} skills={len(card.skills)} ext={card.capabilities.extensions[0].uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
