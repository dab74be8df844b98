#!/usr/bin/env bash
# Checks docs/certification-matrix.md against the repository:
#   1. every backticked token that looks like a repository path exists (relative to the root);
#   2. every criterion ID appears exactly once as a table row, with a known status.
# The ID list is embedded because CI runs on a clean clone that has no copy of the criteria.
#
# Usage: dev/check-matrix.sh [MATRIX_FILE]   (default: docs/certification-matrix.md)
# Exit 0 when all good, 1 with a readable list otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
matrix="${1:-$root/docs/certification-matrix.md}"

if [[ ! -f "$matrix" ]]; then
  echo "check-matrix: matrix file not found: $matrix" >&2
  exit 1
fi

ids=(
  C1.1 C1.2 C1.3 C1.4 C1.5 C1.6
  C2.1 C2.2 C2.3 C2.4 C2.5 C2.6 C2.7
  C3.1 C3.2 C3.3 C3.4 C3.5 C3.6 C3.7
  C4.1 C4.2 C4.3 C4.4 C4.5 C4.6
  C5.1 C5.2 C5.3 C5.4 C5.5
  C6.1 C6.2 C6.3 C6.4 C6.5
  C7.1 C7.2 C7.3 C7.4 C7.5
  C8.1 C8.2 C8.3 C8.4 C8.5
)

# A backticked token counts as a path when it has no whitespace, is not a URL or an absolute
# path / HTTP route (leading '/'), contains no shell or Rust punctuation, and either contains a
# '/' or ends in a known file extension.
ext_re='\.(md|rs|toml|sh|nix|xml|yml|yaml|json|lock|bazel|bzl|conf|sql|txt|py|j2)$'
looks_like_path() {
  local t="$1"
  [[ -n "$t" ]] || return 1
  [[ "$t" =~ [[:space:]] ]] && return 1
  [[ "$t" =~ ^[A-Za-z][A-Za-z0-9+.-]*:// ]] && return 1
  [[ "$t" == /* ]] && return 1
  [[ "$t" =~ [\]\[\(\)\{\}\<\>\$\!\#\*\?\;\|\&\=\,\'\"] ]] && return 1
  [[ "$t" == */* || "$t" =~ $ext_re ]]
}

missing_paths=()
checked=0
# The backticks below are literal: the loop reads `code spans` out of the matrix.
# shellcheck disable=SC2016
while IFS= read -r token; do
  token="${token#\`}"
  token="${token%\`}"
  looks_like_path "$token" || continue
  checked=$((checked + 1))
  if [[ ! -e "$root/$token" ]]; then
    missing_paths+=("$token")
  fi
done < <(grep -o '`[^`]*`' "$matrix" || true)

# Deduplicate while keeping first-seen order.
if ((${#missing_paths[@]})); then
  mapfile -t missing_paths < <(printf '%s\n' "${missing_paths[@]}" | awk '!seen[$0]++')
fi

missing_ids=()
duplicate_ids=()
bad_status=()
for id in "${ids[@]}"; do
  # A row starts with "| <ID> |".
  rows="$(grep -E "^\|[[:space:]]*${id//./\\.}[[:space:]]*\|" "$matrix" || true)"
  n=0
  [[ -n "$rows" ]] && n="$(printf '%s\n' "$rows" | wc -l)"
  if ((n == 0)); then
    missing_ids+=("$id")
    continue
  fi
  ((n > 1)) && duplicate_ids+=("$id")
  while IFS= read -r row; do
    status="$(printf '%s\n' "$row" | awk -F'|' '{ s = $(NF-1); gsub(/^[ \t*]+|[ \t*]+$/, "", s); print s }')"
    case "$status" in
      done | partial | "not yet") ;;
      *) bad_status+=("$id: '$status'") ;;
    esac
  done <<<"$rows"
done

rel="${matrix#"$root"/}"
fail=0
if ((${#missing_paths[@]})); then
  fail=1
  echo "check-matrix: $rel cites ${#missing_paths[@]} path(s) that do not exist:" >&2
  printf '  - %s\n' "${missing_paths[@]}" >&2
fi
if ((${#missing_ids[@]})); then
  fail=1
  echo "check-matrix: $rel has no row for ${#missing_ids[@]} criterion ID(s):" >&2
  printf '  - %s\n' "${missing_ids[@]}" >&2
fi
if ((${#duplicate_ids[@]})); then
  fail=1
  echo "check-matrix: $rel has more than one row for:" >&2
  printf '  - %s\n' "${duplicate_ids[@]}" >&2
fi
if ((${#bad_status[@]})); then
  fail=1
  echo "check-matrix: status must be done, partial or not yet; found:" >&2
  printf '  - %s\n' "${bad_status[@]}" >&2
fi

if ((fail)); then
  exit 1
fi
echo "check-matrix: ok (${#ids[@]} criteria, $checked path citations checked)"
