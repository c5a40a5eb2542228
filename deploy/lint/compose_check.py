"""What `docker compose config` would catch in deploy/compose/compose.yaml, without a Docker
engine: references that resolve (depends_on, volumes, secrets, networks, bind mounts),
variables that make compose-env generates, and the deployment rules we hold ourselves to
(only nginx and the broker published; Plantline containers read-only, no capabilities,
health-checked). The schema itself is checked by check-jsonschema (compose-spec)."""

import re
import sys
from pathlib import Path

import yaml

PUBLISHED = {"nginx", "mosquitto"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def main(compose_file: str) -> int:
    path = Path(compose_file)
    text = path.read_text()
    doc = yaml.safe_load(text)  # resolves anchors and << merge keys like compose does
    generated = set(re.findall(r"^([A-Z_]+)=", (path.parent / "init-env.sh").read_text(), re.M))
    problems = []

    for name in sorted(set(re.findall(r"\$\{([A-Z_]+):\?", text)) - generated):
        problems.append(f"${{{name}}} is required but init-env.sh does not generate it")

    services = doc.get("services", {})
    declared = {kind: set((doc.get(kind) or {}).keys()) for kind in ("volumes", "secrets", "networks")}
    for secret in (doc.get("secrets") or {}).values():
        source = path.parent / secret["file"]
        if "secrets/" not in secret["file"] and not source.exists():
            problems.append(f"secret file {secret['file']} does not exist")

    for name, service in services.items():
        where = f"service {name}"
        depends = service.get("depends_on") or {}
        for target, rule in (depends.items() if isinstance(depends, dict) else [(d, {}) for d in depends]):
            if target not in services:
                problems.append(f"{where}: depends_on unknown service {target}")
            condition = (rule or {}).get("condition", "service_started")
            if condition not in CONDITIONS:
                problems.append(f"{where}: unknown condition {condition}")
            if condition == "service_completed_successfully" and services.get(target, {}).get("restart") != "no":
                problems.append(f"{where}: waits for {target} to complete, but {target} restarts")
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                if not (path.parent / source).exists():
                    problems.append(f"{where}: bind mount {source} does not exist")
            elif source not in declared["volumes"]:
                problems.append(f"{where}: volume {source} is not declared")
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in declared["secrets"]:
                problems.append(f"{where}: secret {secret_name} is not declared")
        for network in service.get("networks") or []:
            if network not in declared["networks"]:
                problems.append(f"{where}: network {network} is not declared")
        if service.get("ports") and name not in PUBLISHED:
            problems.append(f"{where}: publishes ports; only {sorted(PUBLISHED)} may")
        if "build" in service:
            if service.get("read_only") is not True:
                problems.append(f"{where}: Plantline containers run with read_only: true")
            if service.get("cap_drop") != ["ALL"]:
                problems.append(f"{where}: Plantline containers drop ALL capabilities")
            if name != "migrate" and "healthcheck" not in service:
                problems.append(f"{where}: no healthcheck")

    for problem in problems:
        print(f"{compose_file}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{compose_file}: {len(services)} services, references resolve")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
