"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes API
schemas (kubernetes-validate's bundled ones, a pinned version), and consistent with the
program and its image: probe paths and ports, Service ports and the doors guacr binds,
the environment names guacr's configuration reads, the drain and grace timings.

No cluster runs here, so this is what can be checked without one.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from image.replay import parse

from guacr import config

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"  # the API the manifests are written for

# The doors and the environment that sets their ports (issue 10's names).
DOORS = {"guacamole": 4822, "websocket": 4823, "grpc": 50051, "metrics": 9464}
PORT_ENV = {
    "websocket": "GUACR_WEBSOCKET_BIND_PORT",
    "grpc": "GUACR_GRPC_BIND_PORT",
    "metrics": "GUACR_METRICS_BIND_PORT",
}
# Every key issue 10 declares in the typed configuration, each read as GUACR_<NAME>.
# Used only until that configuration is on main; then the names come from guacr itself.
ISSUE_10_KEYS = [
    "websocket_bind_host",
    "websocket_bind_port",
    "websocket_path",
    "websocket_tls",
    "websocket_cert",
    "websocket_key",
    "guacamole_lite_key",
    "token_key",
    "grpc_bind_host",
    "grpc_bind_port",
    "grpc_token",
    "grpc_cert",
    "grpc_key",
    "grpc_client_ca",
    "metrics_bind_host",
    "metrics_bind_port",
    "syslog_address",
    "log_format",
    "shutdown_grace",
    "registry_url",
    "registry_lease_s",
    "advertise_address",
]
# Read by the image's entrypoint, as guacamole/guacd's does (not guacr's configuration).
ENTRYPOINT_ENV = {"LOG_LEVEL", "GUACD_LOG_LEVEL"}


def guacr_env_names() -> set[str]:
    """The ``GUACR_*`` variables guacr's configuration reads."""
    names = set(getattr(config, "ENV", {}))
    fields = {f.name for f in dataclasses.fields(config.Config)}
    names |= {f"GUACR_{name.upper()}" for name in fields}
    if "websocket_bind_host" in fields:  # the typed configuration of issue 10 has landed
        return names
    return names | {f"GUACR_{key.upper()}" for key in ISSUE_10_KEYS}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> list[tuple[str, dict[str, Any]]]:
    """(file, object) for every resource of the base and its components."""
    out: list[tuple[str, dict[str, Any]]] = []
    for kustomization in sorted(KUBE.rglob("kustomization.yaml")):
        for name in yaml.safe_load(kustomization.read_text())["resources"]:
            path = kustomization.parent / name
            out += [(str(path.relative_to(KUBE)), d) for d in documents(path)]
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    for _file, obj in resources():
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name}")


def guacr_container() -> dict[str, Any]:
    pod = find("Deployment", "guacr")["spec"]["template"]["spec"]
    (container,) = (c for c in pod["containers"] if c["name"] == "guacr")
    return dict(container)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


@pytest.mark.parametrize("file_and_obj", resources(), ids=lambda fo: f"{fo[0]}:{fo[1]['kind']}")
def test_manifest_is_valid_kubernetes(file_and_obj: tuple[str, dict[str, Any]]) -> None:
    _file, obj = file_and_obj
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_validation_can_fail() -> None:
    bad = find("Deployment", "guacr")
    bad = {**bad, "spec": {**bad["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_kustomizations_list_every_manifest() -> None:
    listed = {str(KUBE / f) for f, _obj in resources()}
    listed |= {str(p) for p in KUBE.rglob("kustomization.yaml")}
    present = {str(p) for p in KUBE.rglob("*.yaml")}
    assert present == listed, f"not in any kustomization: {sorted(present - listed)}"
    base = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert base["kind"] == "Kustomization"
    assert {i["name"] for i in base["images"]} == {"guacr"}
    component = yaml.safe_load((KUBE / "components/autoscaling/kustomization.yaml").read_text())
    assert component["kind"] == "Component"


def test_container_ports_are_the_images_doors() -> None:
    ports = {p["name"]: p["containerPort"] for p in guacr_container()["ports"]}
    assert ports == DOORS
    exposed = set()
    for step in parse((ROOT / "Dockerfile").read_text()):
        if step.keyword == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in step.args.split()}
    assert exposed == set(DOORS.values())


def test_doors_are_switched_on_at_their_container_ports() -> None:
    env = env_of(guacr_container())
    for door, var in PORT_ENV.items():
        assert env[var] == str(DOORS[door]), var
    # 4822 is guacr's default, bound to 0.0.0.0 by the image's entrypoint; no command
    # or argument overrides that entrypoint here.
    container = guacr_container()
    assert "command" not in container and "args" not in container
    assert "GUACR_BIND_PORT" not in env and "GUACR_BIND_HOST" not in env
    assert config.Config().bind_port == DOORS["guacamole"]
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert re.search(r"exec guacr -f -b 0\.0\.0\.0 ", entrypoint)
    for var in ("GUACR_WEBSOCKET_BIND_HOST", "GUACR_METRICS_BIND_HOST"):
        assert f'export {var}="${{{var}:-0.0.0.0}}"' in entrypoint


def test_every_service_reaches_a_door() -> None:
    container_ports = {p["name"]: p["containerPort"] for p in guacr_container()["ports"]}
    labels = find("Deployment", "guacr")["spec"]["template"]["metadata"]["labels"]
    doors_served = set()
    for _file, obj in resources():
        if obj["kind"] != "Service" or obj["metadata"]["name"] == "guacr-redis":
            continue
        selector = obj["spec"]["selector"]
        assert selector.items() <= labels.items(), obj["metadata"]["name"]
        for port in obj["spec"]["ports"]:
            assert port["targetPort"] in container_ports, port
            assert port["port"] == container_ports[port["targetPort"]]
            doors_served.add(port["targetPort"])
    assert doors_served == set(DOORS)


def test_probes_use_the_health_endpoints_on_the_metrics_door() -> None:
    c = guacr_container()
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}


def test_grace_period_is_drain_wait_plus_shutdown_grace() -> None:
    pod = find("Deployment", "guacr")["spec"]["template"]["spec"]
    c = guacr_container()
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["guacr", "drain", "--wait"]
    wait = int(command[3])
    grace = int(env_of(c)["GUACR_SHUTDOWN_GRACE"])
    assert pod["terminationGracePeriodSeconds"] == wait + grace


def test_runs_as_the_images_unprivileged_user() -> None:
    pod = find("Deployment", "guacr")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000  # useradd -u 1000 in the Dockerfile
    assert "useradd -u 1000" in (ROOT / "Dockerfile").read_text()


def test_environment_names_are_ones_guacr_reads() -> None:
    known = guacr_env_names() | ENTRYPOINT_ENV
    for _file, obj in resources():
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            for name in env_of(c):
                if name.startswith("GUACR_") or name in ENTRYPOINT_ENV:
                    assert name in known, f"{name} is not a setting guacr reads"
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    for name in set(re.findall(r"\bGUACR_[A-Z_]+", entrypoint)):
        assert name in known, f"entrypoint uses {name}, not a setting guacr reads"


def test_registry_points_at_the_redis_service() -> None:
    env = env_of(guacr_container())
    redis = find("Service", "guacr-redis")
    (port,) = redis["spec"]["ports"]
    assert env["GUACR_REGISTRY_URL"] == f"redis://guacr-redis:{port['port']}/0"
    assert env["GUACR_ADVERTISE_ADDRESS"] == f"$(POD_IP):{DOORS['guacamole']}"


def test_requests_fit_the_autoscalers_target() -> None:
    """Memory request >= idle instance + target sessions x measured cost per session."""
    hpa = yaml.safe_load((KUBE / "components/autoscaling/hpa.yaml").read_text())
    (metric,) = hpa["spec"]["metrics"]
    sessions = int(metric["pods"]["target"]["averageValue"])
    request = guacr_container()["resources"]["requests"]["memory"]
    mib = int(request.removesuffix("Mi"))
    idle_mb, per_session_mb = 70, 1.92  # README/issue notes: idle total; PSS at N=50
    assert mib * 1.048576 >= idle_mb + sessions * per_session_mb
    assert hpa["spec"]["scaleTargetRef"]["name"] == "guacr"
