"""deploy/: the container recipe, the compose file and the Kubernetes manifests.

No image is built here (the machines reach no container registry); what can be
checked without one is: every manifest parses and holds what operations rely on, and
each configuration they ship passes `dge-idp check-config` with the secrets given the
way the manifests give them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from idp_server import REPO_ROOT, clean_env, idp_binary, loopback_http

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRETS = {
    "DGE_DATABASE__URL": "postgres://dge:secret@postgres:5432/dge_identity",
    "DGE_REDIS__URL": "redis://redis:6379",
    "DGE_MAIL__SMTP_URL": "smtp://mailpit:1025",
    "DGE_KEYS__ENCRYPTION_KEY": KEY,
}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifests() -> dict[str, dict]:
    kustomization = documents(K8S / "kustomization.yaml")[0]
    found = {}
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), f"kustomization lists a missing file: {name}"
        for doc in documents(K8S / name):
            found[doc["kind"]] = doc
    return found


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(path)],
        capture_output=True, text=True, env=clean_env(env), timeout=30,
    )


def test_kubernetes_manifests_hold_what_operations_rely_on():
    found = manifests()
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= set(found)
    deployment = found["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (server,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 8080, "grpc": 50051, "metrics": 9100}
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["resources"]["limits"]["memory"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["envFrom"][0]["secretRef"]["name"] == "dge-idp-secrets"
    assert pod["initContainers"][0]["args"][0] == "migrate"
    assert found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert found["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    # The example Secret names exactly what the configuration takes from the environment.
    (secret,) = documents(K8S / "secret.example.yaml")
    assert set(secret["stringData"]) == set(SECRETS)
    # The probes answer as the manifests expect on a running server.


def test_shipped_configurations_pass_check_config(tmp_path):
    configmap = manifests()["ConfigMap"]
    k8s_config = tmp_path / "k8s.toml"
    k8s_config.write_text(configmap["data"]["dge-idp.toml"], encoding="utf-8")
    for config in (k8s_config, DEPLOY / "dge-idp.compose.toml"):
        result = check_config(config, SECRETS)
        assert result.returncode == 0, f"{config}: {result.stdout}{result.stderr}"
        # Without the secrets the placeholders are refused, naming the key.
        result = check_config(config, {})
        assert result.returncode != 0
        assert "keys.encryption_key" in result.stdout + result.stderr


def test_compose_and_dockerfile(idp):
    compose = documents(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert {"dge-idp-1", "dge-idp-2", "postgres", "redis", "mailpit"} <= set(services)
    replica = services["dge-idp-1"]
    assert replica["environment"]["DGE_REDIS__URL"].startswith("redis://")
    probe = replica["healthcheck"]["test"]
    assert probe[1:3] == ["/usr/local/bin/dge-idp", "probe"]
    # The health check command works against a real server, and fails when it should.
    ok = subprocess.run([str(idp_binary()), "probe", f"{idp.base_url}/readyz"], capture_output=True, timeout=10)
    assert ok.returncode == 0
    missing = subprocess.run([str(idp_binary()), "probe", f"{idp.base_url}/nope"], capture_output=True, timeout=10)
    assert missing.returncode != 0
    assert loopback_http().get(f"{idp.base_url}/healthz", timeout=5).status_code == 200

    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage build"
    users = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and "root" not in users[-1].replace("nonroot", ""), "runs as a non-root user"


def test_image_build_context_and_offline_bases():
    """The image is built by hand (deploy/build-image-offline.sh, see README), not here:
    what can be checked is that the context keeps build output, local tools and secrets
    out, and that the script makes exactly the base images the recipe names."""
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".git", ".venv", "deploy/.env"} <= ignored
    assert "**/node_modules" in ignored
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    bases = {
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("FROM ") and not line.split()[1].startswith("--")
    }
    script = (DEPLOY / "build-image-offline.sh").read_text(encoding="utf-8")
    made = set()
    for line in script.splitlines():
        if line.startswith(("RUST_IMAGE=", "RUNTIME_IMAGE=")):
            made.add(line.split("=", 1)[1].removeprefix("docker.io/library/"))
    assert made == bases, f"the script makes {made}, the Dockerfile uses {bases}"
    assert "--pull=never" in script
