#!/usr/bin/env bash
# Token verification against an independent implementation: PyJWT (on Python's cryptography) signs tokens with
# RSA (RS256), RSA-PSS (PS256) and P-256 (ES256) keys it generates, and the kit's verifier must accept them
# with the keys as PyJWT publishes them (crates/telemed-kit/tests/auth_peers.rs).
# Installs what it needs (cached in .venv).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

step "tools"
ensure_venv scripts/requirements-auth.txt

step "tokens signed by PyJWT"
tokens="$(cargo_target_dir)/auth-peer-tokens.json"
"$VENV/bin/python" tests/auth/peer_tokens.py > "$tokens"

step "the kit verifies them"
AUTH_PEER_TOKENS="$tokens" cargo test --locked -p telemed-kit --test auth_peers -- --ignored
