#!/usr/bin/env bash
# Builds the dashboard query-api serves (crates/query-api/dashboard/dist): installs the
# locked npm packages and copies our sources and uPlot's browser build into dist/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DASHBOARD="$ROOT/crates/query-api/dashboard"
command -v npm >/dev/null || apt_install nodejs npm
say "building the dashboard (npm ci + build.mjs)"
# A syntax error in one module blanks the whole page: refuse to build it.
for module in "$DASHBOARD"/src/*.js; do
  node --check "$module" || die "the dashboard's ${module#$ROOT/} does not parse"
done
(cd "$DASHBOARD" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs >/dev/null) \
  || die "the dashboard did not build (see above)"
