#!/usr/bin/env bash
# The feature-progress dashboard in a real browser (docs/dashboard.md): dev/dashboard.py writes
# the page from the run's results, headless Chromium dumps its DOM and takes a screenshot of it
# (dashboard/screenshot.png beside index.html), and the DOM is checked against the matrix:
# every criterion ID of docs/certification-matrix.md is one row showing its status, and the
# summary's counts are those of the matrix's rows.
#
# Usage: dev/check-dashboard.sh [RESULTS_DIR]
#   RESULTS_DIR defaults to $COMPTOIR_RESULTS_DIR, else ~/.cache/comptoir/results (dev/test's).
# Needs Debian's chromium, installed when missing (as root); python3.
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-dashboard"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

results="${1:-${COMPTOIR_RESULTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/comptoir/results}}"
command -v chromium >/dev/null || install_missing chromium

page="$(python3 dev/dashboard.py --results "$results")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# A throwaway profile; as root Chromium runs only without its sandbox.
flags=(--headless=new --disable-gpu --no-first-run --no-default-browser-check --hide-scrollbars
  --user-data-dir="$tmp/profile")
is_root && flags+=(--no-sandbox)
chromium_run() {
  timeout 60 chromium "${flags[@]}" "$@" "file://$page" 2>>"$tmp/chromium.log" \
    || { cat "$tmp/chromium.log" >&2; die "chromium $1 failed on $page"; }
}

chromium_run --dump-dom >"$tmp/dom.html"

# Checks the DOM; prints the page's height in pixels (an estimate from its rows and lines).
height="$(python3 - "$tmp/dom.html" docs/certification-matrix.md "$(git rev-parse HEAD)" <<'EOF'
import re
import sys
from collections import Counter
from html.parser import HTMLParser

dom_file, matrix_file, head = sys.argv[1:]
matrix = {}
for line in open(matrix_file, encoding="utf-8"):
    m = re.match(r"^\|\s*(C\d+\.\d+)\s*\|.*\|\s*\**(done|partial|not yet)\**\s*\|\s*$", line)
    if m:
        matrix[m.group(1)] = m.group(2)
if not matrix:
    sys.exit(f"check-dashboard: no criterion rows read from {matrix_file}")


class Page(HTMLParser):
    """Criterion rows (id, data-status, the first badge's text, lines), summary cards, commit."""

    def __init__(self):
        super().__init__()
        self.rows, self.cards, self.text_of = {}, {}, None
        self.row, self.card, self.commit, self.lines, self.folded = None, None, None, 0, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and re.fullmatch(r"C\d+\.\d+", a.get("id") or ""):
            self.row = a["id"]
            if self.row in self.rows:
                sys.exit(f"check-dashboard: two rows for {self.row}")
            self.rows[self.row] = {"status": a.get("data-status"), "checks": a.get("data-checks"),
                                   "badge": None, "li": Counter()}
            self.cell = 0
        elif tag == "tr":
            self.row = None
            self.lines += 1
        elif tag == "td" and self.row:
            self.cell += 1
        elif tag == "details":
            self.folded = True
        elif tag in ("li", "summary") and self.row and not (tag == "li" and self.folded):
            self.rows[self.row]["li"][self.cell] += 1
        elif tag == "li" and not self.row:
            self.lines += 1
        elif tag == "span" and self.row and "badge" in (a.get("class") or "") and self.rows[self.row]["badge"] is None:
            self.text_of = ("badge", self.row)
            self.rows[self.row]["badge"] = ""
        elif tag == "div" and "card" in (a.get("class") or ""):
            key = next(((k, v) for k, v in a.items() if k.startswith("data-")), None)
            self.card = key
            self.cards[key] = ""
        elif tag == "b" and self.card:
            self.text_of = ("card", self.card)
        elif tag == "code" and a.get("id") == "commit":
            self.text_of = ("commit", None)
            self.commit = ""

    def handle_endtag(self, tag):
        if tag in ("span", "b", "code"):
            self.text_of = None
        if tag == "div":
            self.card = None
        if tag == "details":
            self.folded = False
        if tag == "tbody":
            self.row = None

    def handle_data(self, data):
        if not self.text_of:
            return
        kind, key = self.text_of
        if kind == "badge":
            self.rows[key]["badge"] += data
        elif kind == "card":
            self.cards[key] += data
        else:
            self.commit += data


page = Page()
page.feed(open(dom_file, encoding="utf-8").read())
problems = []
for cid, status in matrix.items():
    row = page.rows.get(cid)
    if row is None:
        problems.append(f"{cid}: no row")
    elif row["status"] != status or (row["badge"] or "").strip() != status:
        problems.append(f"{cid}: shows status {row['status']!r} / {row['badge']!r}, the matrix says {status!r}")
    elif row["checks"] not in ("passed", "failed", "incomplete", "not run", "none"):
        problems.append(f"{cid}: data-checks is {row['checks']!r}")
problems += [f"{cid}: a row for a criterion the matrix does not have" for cid in page.rows.keys() - matrix.keys()]
by_status = Counter(matrix.values())
expected = {("data-criteria", str(len(matrix))): str(len(matrix))}
expected |= {("data-count-status", s): str(by_status[s]) for s in ("done", "partial", "not yet")}
for key, want in expected.items():
    got = page.cards.get(key)
    if got is None or got.strip() != want:
        problems.append(f"summary {key[0]}={key[1]!r}: shows {got!r}, the matrix's rows say {want}")
if (page.commit or "").strip() != head:
    problems.append(f"commit shown {page.commit!r}, HEAD is {head}")
if problems:
    sys.exit("check-dashboard: the rendered page disagrees with the matrix:\n  " + "\n  ".join(problems))
print(f"check-dashboard: {len(matrix)} criteria rendered with their status; summary "
      + ", ".join(f"{s} {by_status[s]}" for s in ("done", "partial", "not yet")), file=sys.stderr)
# Each criterion row as tall as its longest cell (19 px a line, some wrap: 24), plus the others.
row_lines = sum(max([1, *row["li"].values()]) for row in page.rows.values())
print(480 + 16 * len(page.rows) + 24 * row_lines + 30 * page.lines)
EOF
)"

chromium_run --window-size=1400,"$height" --screenshot="$(dirname "$page")/screenshot.png" >/dev/null
log "page $page, screenshot $(dirname "$page")/screenshot.png (1400×$height)"
