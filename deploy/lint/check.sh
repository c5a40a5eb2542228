#!/usr/bin/env bash
# Static checks of everything that ships but cannot run here without a Docker engine or a
# cluster: Dockerfile (hadolint), compose (compose-spec schema + references), Kubernetes
# (kustomize build of each overlay + schema validation, strict), GitHub workflows
# (SchemaStore schema + actionlint), OpenAPI and AsyncAPI (real validators).
# Run by `make lint` and `make test`; exits non-zero on the first broken file.
source "$(dirname "${BASH_SOURCE[0]}")/../local/lib.sh"
set -euo pipefail

VENV="$STATE/lint-venv"
LINT="$ROOT/deploy/lint"
if ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null \
   || ! cmp -s "$LINT/requirements.txt" "$VENV/requirements.txt"; then
  say "installing the static checks' tools into ${VENV#$ROOT/}"
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q -r "$LINT/requirements.txt"
  cp "$LINT/requirements.txt" "$VENV/requirements.txt"
fi
command -v npm >/dev/null || apt_install nodejs npm
(cd "$LINT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

step() { say "check: $*"; }

step "Dockerfile (hadolint)"
"$VENV/bin/hadolint" "$ROOT/deploy/docker/Dockerfile"

step "compose (compose-spec schema, references)"
"$VENV/bin/check-jsonschema" -q --builtin-schema vendor.compose-spec "$ROOT/deploy/compose/compose.yaml"
"$VENV/bin/python" "$LINT/compose_check.py" "$ROOT/deploy/compose/compose.yaml"

step "Kubernetes (kubectl kustomize + kubernetes-validate --strict, Kubernetes 1.31)"
command -v kubectl >/dev/null || die "kubectl is needed for kustomize (install kubectl)"
for overlay in "$ROOT"/deploy/k8s/overlays/*/; do
  rendered="$(mktemp --suffix=.yaml)"
  kubectl kustomize "$overlay" > "$rendered"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.31 "$rendered" | tee "$rendered.out"
  if grep -q '^ERROR' "$rendered.out"; then rm -f "$rendered" "$rendered.out"; die "$overlay does not validate"; fi
  echo "$(basename "$overlay"): $(grep -c '^kind:' "$rendered") objects valid"
  rm -f "$rendered" "$rendered.out"
done

step "GitHub workflows (SchemaStore schema, actionlint) and AsyncAPI"
"$VENV/bin/check-jsonschema" -q --builtin-schema vendor.github-workflows "$ROOT"/.github/workflows/*.yml
node "$LINT/validate.mjs" "$ROOT"

if [ -f "$ROOT/proto-docs/openapi.json" ]; then
  step "OpenAPI (openapi-spec-validator)"
  "$VENV/bin/openapi-spec-validator" "$ROOT/proto-docs/openapi.json"
fi
step "Rust functions outside tests at most 80 lines"
python3 "$LINT/long_functions.py" "$ROOT/crates"
say "static checks passed"
