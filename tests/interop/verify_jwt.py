#!/usr/bin/env python3
"""Verifies a Plantline access token with PyJWT, knowing nothing but the JWKS.

usage: verify_jwt.py JWKS_URL TOKEN [ISSUER AUDIENCE]
Prints the verified claims as JSON; exits 1 when the token does not verify.
"""
import json
import sys
import urllib.request

import jwt  # PyJWT, an independent implementation


def main() -> int:
    jwks_url, token = sys.argv[1], sys.argv[2]
    issuer = sys.argv[3] if len(sys.argv) > 3 else "plantline"
    audience = sys.argv[4] if len(sys.argv) > 4 else "plantline-api"
    with urllib.request.urlopen(jwks_url, timeout=5) as response:
        jwks = json.load(response)
    kid = jwt.get_unverified_header(token).get("kid")
    matching = [k for k in jwks["keys"] if k.get("kid") == kid]
    if not matching:
        print(f"no key with kid {kid!r} in the JWKS", file=sys.stderr)
        return 1
    key = jwt.PyJWK(matching[0]).key
    try:
        claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
    except jwt.PyJWTError as err:
        print(f"invalid: {err}", file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
