#!/usr/bin/env bash
# Opens an experiment's report.html in headless Chromium (Debian package `chromium`) and saves a
# full-page screenshot, to check that the table and the plots render in a browser:
#   bash scripts/report-screenshot.sh runs/attention_zoo [OUT.png]
# Installs chromium with apt when it is missing (needs root, or run `apt-get install chromium`).
set -euo pipefail
dir="${1:?usage: report-screenshot.sh RUNS/EXPERIMENT [OUT.png]}"
out="${2:-$dir/report-screenshot.png}"
report="$(cd "$dir" && pwd)/report.html"
[[ -f "$report" ]] || { echo "error: $report not found (run \`attnrec run\` first)" >&2; exit 2; }
if ! command -v chromium >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# --no-sandbox: Chromium refuses to start its sandbox as root (CI machines); the page is our own.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,4200 \
  --screenshot="$out" "file://$report" 2>/dev/null
[[ -s "$out" ]] || { echo "error: chromium wrote no screenshot" >&2; exit 1; }
echo "screenshot of $report: $out"
