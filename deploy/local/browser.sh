#!/usr/bin/env bash
# What the browser test needs: Debian's Chromium and the locked playwright-core package
# (which drives a browser already installed and downloads none).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v chromium >/dev/null || apt_install chromium
command -v npm >/dev/null || apt_install nodejs npm
(cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
  || die "could not install the browser test's packages (see above)"
