"""eHealth access tokens for the Python suites that run the reference service, which verifies them.

The tokens are signed with PyJWT on `cryptography` (an implementation independent of the kit's), with an RSA key
made when this module is imported, and the key set is served over real HTTP by `JwksServer`: the service fetches
it through its outbound client as it would fetch Keycloak's. `service_env` gives the variables that make a service
trust this issuer.

    with JwksServer() as jwks:
        env = {**service_env(jwks), "KVSTORE_URL": ...}
        headers = {"Authorization": f"Bearer {token()}"}

A suite that imports this adds `tests/` to `sys.path` (the suites run from their own folders) and installs
scripts/requirements-auth.txt.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

# The realm the tokens come from. Never fetched: the keys are at `JwksServer.url` (AUTH_JWKS_URL).
ISSUER = "https://saml.test.example/auth/realms/ehealth"
# The privilege the reference service requires for writes by default.
WRITE_PRIVILEGE = "Settings.write"

_KID = "python-suites-rsa"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_JWK = {**json.loads(RSAAlgorithm.to_jwk(_KEY.public_key())), "kid": _KID, "use": "sig", "alg": "RS256"}


def token(privileges: tuple[str, ...] = ("Patient.read", WRITE_PRIVILEGE), lifetime_s: int = 7200,
          subject: str = "python-suites") -> str:
    """A signed access token with the eHealth claims of a practitioner holding `privileges`."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "EHealth",
        "sub": subject,
        "azp": "PythonSuites",
        "typ": "Bearer",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": f"{subject}-{now}-{time.perf_counter_ns()}",
        "scope": "openid profile ehealth",
        "realm_access": {"roles": list(privileges)},
        "context": {"organization_id": "https://fut.example/fhir/Organization/1"},
        "user_id": "https://fut.example/fhir/Practitioner/3",
        "user_type": "PRACTITIONER",
    }
    return jwt.encode(claims, _KEY, algorithm="RS256", headers={"kid": _KID})


class JwksServer:
    """Serves the key set at every path, on 127.0.0.1 (or `host`) and a free port, from a thread."""

    def __init__(self, host: str = "127.0.0.1"):
        body = json.dumps({"keys": [_JWK]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/auth/realms/ehealth/protocol/openid-connect/certs"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "JwksServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def service_env(jwks: JwksServer, host: str | None = None) -> dict[str, str]:
    """AUTH_* for a service that trusts this module's tokens; `host` replaces the JWKS host (a container reaches
    the host under another name)."""
    url = jwks.url if host is None else jwks.url.replace(f"//{jwks.host}:", f"//{host}:", 1)
    return {"AUTH_ISSUER": ISSUER, "AUTH_JWKS_URL": url}


def keys_loaded(line: str | dict) -> bool:
    """Whether a log line (raw, or its parsed fields) says the service's `auth-keys` readiness check is up:
    tokens can be checked."""
    if isinstance(line, str):
        try:
            line = json.loads(line)
        except ValueError:
            return False
    return isinstance(line, dict) and line.get("check") == "auth-keys" \
        and line.get("body") == "readiness check is up"
