#!/usr/bin/env bash
# Development keys of the identity service, made with openssl, each file mode 0600:
#   kek-<id>              a key-encryption key (32 random bytes, base64)
#   blind-index           the HMAC key of the email blind index (32 random bytes, base64)
#   token-signing.pem     the Ed25519 private key access tokens are signed with (PKCS#8 PEM)
#   notifications-token   the bearer token the notifications service presents on /internal
# Existing files are kept: running it twice does not rotate anything by surprise.
#
# Usage: dev/identity-keys.sh DIR [KEK_ID]   (KEK_ID defaults to dev-1)
# Source it to get the function: identity_keys DIR [KEK_ID]
# Production keys come from the secret store (sops-nix/agenix), never from this script.
set -euo pipefail

identity_keys() {
  local dir="${1:?usage: identity_keys DIR [KEK_ID]}"
  local kek_id="${2:-dev-1}"
  command -v openssl >/dev/null || { printf 'identity-keys: openssl is required\n' >&2; return 1; }
  mkdir -p "$dir"
  chmod 0700 "$dir"
  # Files are created under umask 077, so no key is ever readable by others, even briefly.
  (
    umask 077
    [[ -s "$dir/kek-$kek_id" ]] || openssl rand -base64 32 >"$dir/kek-$kek_id"
    [[ -s "$dir/blind-index" ]] || openssl rand -base64 32 >"$dir/blind-index"
    [[ -s "$dir/token-signing.pem" ]] || openssl genpkey -algorithm ed25519 -out "$dir/token-signing.pem"
    [[ -s "$dir/notifications-token" ]] || openssl rand -hex 32 >"$dir/notifications-token"
  )
  chmod 0600 "$dir/kek-$kek_id" "$dir/blind-index" "$dir/token-signing.pem" "$dir/notifications-token"
  printf 'identity-keys: keys in %s (KEK id %s)\n' "$dir" "$kek_id" >&2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  identity_keys "$@"
fi
