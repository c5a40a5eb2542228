#!/usr/bin/env bash
# What the Node-RED interop test needs: the locked node-red and node-red-contrib-influxdb
# packages, run with the machine's Node.js against the flow documented in proto-docs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v npm >/dev/null || apt_install nodejs npm
(cd "$ROOT/tests/interop/node-red" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
  || die "could not install Node-RED for the interop test (see above)"
