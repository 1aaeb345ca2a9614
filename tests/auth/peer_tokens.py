"""Tokens signed by an independent implementation (PyJWT on cryptography), for crates/telemed-kit/tests/auth_peers.rs.

Prints one JSON object: the issuer, the JWKS publishing a fresh RSA key (for RS256 and PS256) and a fresh P-256
key (for ES256), and per algorithm a token with the eHealth claims signed with PyJWT. Run by
scripts/test-auth-peers.sh.
"""

import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://saml.peer.example/auth/realms/ehealth"


def jwk(public_key, algorithm, kid, alg):
    key = json.loads(algorithm.to_jwk(public_key))
    key.update({"kid": kid, "use": "sig", "alg": alg})
    return key


def main():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pss_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = {
        "RS256": ("peer-rsa", rsa_key, RSAAlgorithm),
        "PS256": ("peer-pss", pss_key, RSAAlgorithm),
        "ES256": ("peer-ec", ec_key, ECAlgorithm),
    }
    now = int(time.time())
    tokens = {}
    for alg, (kid, key, algorithm) in keys.items():
        claims = {
            "iss": ISSUER,
            "aud": ["EHealth", "account"],
            "sub": f"peer-{alg}",
            "azp": "PeerClient",
            "typ": "Bearer",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "scope": "openid ehealth",
            "realm_access": {"roles": ["Patient.read", f"{alg}.signed"]},
            "context": {"organization_id": "https://fut.example/fhir/Organization/7"},
            "user_id": "https://fut.example/fhir/Practitioner/5",
            "user_type": "PRACTITIONER",
        }
        tokens[alg] = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    jwks = {
        "keys": [
            jwk(key.public_key(), algorithm, kid, alg) for alg, (kid, key, algorithm) in keys.items()
        ]
    }
    json.dump({"issuer": ISSUER, "jwks": jwks, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
