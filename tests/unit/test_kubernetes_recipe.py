"""examples/kubernetes: the manifests load, refer to each other correctly, and the
configuration they carry is one ``shoal node`` accepts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.config import load_config

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"


def manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(RECIPE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return manifests()


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [c] = docs["Deployment/shoal"]["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_the_recipe_holds_a_headless_service_a_config_map_and_a_deployment(
    docs: dict[str, dict[str, Any]],
) -> None:
    assert set(docs) == {"Service/shoal", "ConfigMap/shoal-config", "Deployment/shoal"}
    service = docs["Service/shoal"]["spec"]
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True


def test_the_service_selects_the_pods_and_names_their_ports(
    docs: dict[str, dict[str, Any]],
) -> None:
    deployment = docs["Deployment/shoal"]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service/shoal"]["spec"]["selector"].items() <= labels.items()
    named = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    for port in docs["Service/shoal"]["spec"]["ports"]:
        assert port["targetPort"] in named
        assert port["port"] == named[port["targetPort"]]


def test_probes_use_the_management_health_endpoints(docs: dict[str, dict[str, Any]]) -> None:
    c = container(docs)
    named = {p["name"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/alive"
    server = (Path(__file__).resolve().parents[2] / "shoal/management/_server.py").read_text()
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] in named
        assert f'add_get("{get["path"]}"' in server


def test_the_config_map_is_mounted_where_the_command_reads_it(
    docs: dict[str, dict[str, Any]],
) -> None:
    c = container(docs)
    pod = docs["Deployment/shoal"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = c["volumeMounts"]
    config_map = volumes[mount["name"]]["configMap"]["name"]
    assert f"ConfigMap/{config_map}" in docs
    command = c["command"]
    config_path = Path(command[command.index("--config") + 1])
    assert config_path.parent == Path(mount["mountPath"])
    assert config_path.name in docs[f"ConfigMap/{config_map}"]["data"]


def test_the_configuration_loads_and_matches_the_manifests(
    docs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    text = docs["ConfigMap/shoal-config"]["data"]["shoal.toml"]
    tomllib.loads(text)
    file = tmp_path / "shoal.toml"
    file.write_text(text)
    c = container(docs)
    env = {e["name"]: "10.1.2.3" if "HOST" in e["name"] else "x" * 32 for e in c["env"]}
    config = load_config(file, env=env)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert config.remote.port == ports["remoting"]
    assert config.management.port == ports["management"]
    assert config.remote.host == "10.1.2.3"  # the pod IP
    assert config.remote.cluster_secret is not None
    assert config.management.token is not None
    assert config.discovery.method == "dns"
    assert config.discovery.service_name == "shoal.default.svc.cluster.local"
    assert config.discovery.service_name.split(".")[0] == docs["Service/shoal"]["metadata"]["name"]
    assert config.cluster.seed_nodes == ()


def test_the_secret_the_pods_read_is_the_one_the_readme_creates(
    docs: dict[str, dict[str, Any]],
) -> None:
    readme = (RECIPE / "README.md").read_text()
    for e in container(docs)["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        assert f"kubectl create secret generic {ref['name']}" in readme
        assert re.search(rf"--from-literal={re.escape(ref['key'])}=", readme)


def test_the_image_provides_the_shoal_command(docs: dict[str, dict[str, Any]]) -> None:
    assert container(docs)["command"][0] == "shoal"
    pyproject = tomllib.loads((RECIPE.parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["shoal"] == "shoal.cli:main"
    assert "pip install" in (RECIPE / "Dockerfile").read_text()
