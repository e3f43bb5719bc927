"""The deployment files in deploy/ are well-formed and agree with the code.

What can be checked without Docker, a cluster or systemd: every YAML parses;
the Kubernetes manifests pass the Kubernetes JSON schemas (kubernetes-validate
ships them, offline); the compose file has the structure Docker expects; the
Dockerfile only copies files that exist and that /.dockerignore lets through;
the systemd unit has its keys; every stop timeout outlasts the drain deadline
passed to ``phonebridge serve``; .env.example lists every setting phonebridge/config/
reads, and holds no secret.
"""

from __future__ import annotations

import argparse
import configparser
import fnmatch
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from phonebridge import config, serve
from phonebridge.config import Settings
from phonebridge.personas.loader import load_personas

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
# uvicorn's graceful-shutdown timeout is the drain deadline plus this (serve.py).
UVICORN_MARGIN_SECONDS = 10
# Variables the deployment files use that phonebridge itself never reads.
COMPOSE_ONLY_VARIABLES = frozenset({"BRIDGE_DOMAIN", "HF_TOKEN"})
METRICS = (
    "phonebridge_active_calls",
    "phonebridge_calls_total",
    "phonebridge_model_connect_seconds",
    "phonebridge_model_time_to_ready_seconds",
    "phonebridge_frame_processing_seconds",
    "phonebridge_silence_frames_total",
    "phonebridge_twilio_playback_lag_seconds",
    "phonebridge_hangup_to_model_closed_seconds",
    "phonebridge_model_socket_seconds_total",
    "phonebridge_leases",
)


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def k8s_manifests() -> list[Path]:
    """Every manifest, the development dependencies in dev/ included."""
    return sorted(path for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml")


def k8s_objects(directory: Path = K8S) -> list[dict[str, Any]]:
    """The objects of ``directory``'s manifests (not its subdirectories)."""
    return [
        document
        for path in sorted(directory.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def load_one(path: Path) -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert len(documents) == 1, f"{path.name}: expected one document"
    document: dict[str, Any] = documents[0]
    return document


def serve_flags(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` as arguments of ``phonebridge serve``: unknown flags fail."""
    parser = argparse.ArgumentParser(prog="phonebridge", exit_on_error=False)
    serve.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


# -- YAML ----------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents
    assert all(isinstance(doc, dict) for doc in documents)


# -- Kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize("path", k8s_manifests(), ids=lambda path: str(path.relative_to(K8S)))
def test_manifest_passes_kubernetes_schema(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_check_rejects_broken_manifests() -> None:
    replicas = load_one(K8S / "statefulset.yaml")
    replicas["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(replicas, KUBERNETES_VERSION, strict=True)
    replicas = load_one(K8S / "statefulset.yaml")
    replicas["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(replicas, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", [K8S, K8S / "dev"], ids=["k8s", "dev"])
def test_kustomization_lists_every_manifest_but_the_secret_template(directory: Path) -> None:
    kustomization = load_one(directory / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert all((directory / name).is_file() for name in listed)
    expected = {
        path.name for path in directory.glob("*.yaml") if path.name != "kustomization.yaml"
    } - {"secret.example.yaml"}
    # The template holds placeholders: applying it would overwrite real keys.
    assert listed == expected


def test_kinds_are_all_there() -> None:
    kinds = {o["kind"] for o in k8s_objects()}
    assert kinds >= {
        "StatefulSet",
        "Deployment",  # the edge proxy
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    }
    assert load_one(K8S / "hpa.yaml")["apiVersion"] == "autoscaling/v2"
    assert load_one(K8S / "pdb.yaml")["apiVersion"] == "policy/v1"
    dependencies = {(o["kind"], o["metadata"]["name"]) for o in k8s_objects(K8S / "dev")}
    assert {("Service", "postgres"), ("Service", "redis")} <= dependencies


def test_replicas_that_share_a_pool_are_wired_to_the_shared_stores() -> None:
    """Three pods, one PERSONAPLEX_URLS: leases must be in Redis (PROTOCOLS.md §2.1)."""
    replicas = load_one(K8S / "statefulset.yaml")["spec"]["replicas"]
    settings = load_one(K8S / "configmap-settings.yaml")["data"]
    secret = load_one(K8S / "secret.example.yaml")["stringData"]
    assert replicas > 1
    assert settings["PERSONAPLEX_URLS"]
    assert secret["PHONEBRIDGE_REDIS_URL"].strip("<>").startswith("redis://")
    assert secret["DATABASE_URL"]
    assert settings["PHONEBRIDGE_S3_BUCKET"]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = load_one(K8S / "statefulset.yaml")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def test_grace_period_outlasts_prestop_and_drain() -> None:
    drain = serve_flags(container()["args"]).drain_seconds
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + drain + UVICORN_MARGIN_SECONDS


def test_probes_and_security() -> None:
    main = container()
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["resources"]["requests"]["cpu"]  # the HPA's CPU target needs a request
    pod = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The same uid the image runs as (Dockerfile USER).
    assert f"USER {pod['securityContext']['runAsUser']}:" in (DEPLOY / "Dockerfile").read_text()
    # With a read-only root, every path the bridge writes must be a volume.
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    env = {item["name"]: item["value"] for item in main["env"] if "value" in item}
    assert env["PHONEBRIDGE_DATA"] in mounts
    assert env["PHONEBRIDGE_PERSONAS"] in mounts
    assert env["PHONEBRIDGE_HOST"] == "0.0.0.0"  # inside the pod


def test_image_tags_match_the_project_version() -> None:
    version = project_version()
    assert container()["image"] == f"phonebridge:{version}"
    compose = load_one(DEPLOY / "docker-compose.yml")
    assert compose["services"]["phonebridge"]["image"] == f"phonebridge:{version}"


def test_objects_point_at_each_other() -> None:
    replicas = load_one(K8S / "statefulset.yaml")
    labels = replicas["spec"]["template"]["metadata"]["labels"]
    selector = replicas["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    port_names = {port["name"] for port in container()["ports"]}
    for name in ("phonebridge", "phonebridge-replicas"):
        service = k8s_object("Service", name)
        assert service["spec"]["selector"].items() <= labels.items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    pdb = load_one(K8S / "pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = load_one(K8S / "hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["spec"]["scaleTargetRef"]["name"] == replicas["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 3
    referenced = {
        source[kind]["name"]
        for source in container()["envFrom"]
        for kind in ("configMapRef", "secretRef")
        if kind in source
    } | {volume["configMap"]["name"] for volume in pod_spec()["volumes"] if "configMap" in volume}
    defined = {o["metadata"]["name"] for o in k8s_objects()}
    assert referenced <= defined


def test_replicas_have_stable_ids_from_their_pod_names() -> None:
    replicas = load_one(K8S / "statefulset.yaml")
    assert replicas["spec"]["replicas"] == 3
    # Per-pod DNS names (<pod>.<serviceName>) come from the headless Service,
    # which must publish a draining (unready) pod: its calls' streams still go there.
    headless = k8s_object("Service", replicas["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    env = {item["name"]: item for item in container()["env"]}
    source = env["PHONEBRIDGE_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.name"
    # A pod name is a valid replica id: the StatefulSet's name plus an ordinal.
    settings = Settings.from_env(
        {"TWILIO_AUTH_TOKEN": "x", "PHONEBRIDGE_REPLICA_ID": f"{replicas['metadata']['name']}-2"},
        public_url="https://bridge.example.com",
    )
    assert settings.stream_url == "wss://bridge.example.com/twilio/r/phonebridge-2/media"
    # The edge routes to <id>.<headless Service> in the pods' namespace.
    edge = k8s_object("Deployment", "phonebridge-edge")
    edge_env = {
        e["name"]: e["value"] for e in edge["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert edge_env["BRIDGE_REPLICAS_HOST"].startswith(headless["metadata"]["name"] + ".")


def test_configured_settings_are_valid_settings() -> None:
    settings_data = load_one(K8S / "configmap-settings.yaml")["data"]
    assert "PHONEBRIDGE_REPLICA_ID" not in settings_data  # per pod, from its name
    secret_keys = set(load_one(K8S / "secret.example.yaml")["stringData"])
    assert set(settings_data) <= config.KNOWN_VARIABLES
    assert secret_keys <= config.KNOWN_VARIABLES
    environ = dict(settings_data) | {"TWILIO_AUTH_TOKEN": "placeholder"}
    settings = Settings.from_env(environ)
    assert settings.public_url.startswith("https://")
    assert config.unknown_variables(environ) == []


def test_secret_template_holds_only_placeholders() -> None:
    values = load_one(K8S / "secret.example.yaml")["stringData"].values()
    assert all(value.startswith("<") and value.endswith(">") for value in values)


def test_persona_configmap_loads(tmp_path: Path) -> None:
    data = load_one(K8S / "configmap-personas.yaml")["data"]
    assert data
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    book = load_personas(tmp_path)
    assert len(book.personas) == len(data)


# -- compose and Caddy -----------------------------------------------------------


def compose() -> dict[str, Any]:
    return load_one(DEPLOY / "docker-compose.yml")


def test_compose_services_are_complete() -> None:
    services = compose()["services"]
    assert set(services) == {"phonebridge", "personaplex", "caddy"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert service["healthcheck"]["test"], name
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name
        build = service.get("build")
        if build is not None:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in compose()["volumes"], f"{name}: {source}"


def test_compose_phonebridge_drains_before_being_killed() -> None:
    service = compose()["services"]["phonebridge"]
    drain = serve_flags(service["command"]).drain_seconds
    grace = service["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) >= drain + UVICORN_MARGIN_SECONDS
    # Settings and secrets come from the repository root's .env (.env.example's copy).
    assert [(DEPLOY / path).resolve() for path in service["env_file"]] == [ROOT / ".env"]
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_compose_personaplex_has_a_gpu_and_is_private() -> None:
    service = compose()["services"]["personaplex"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device["driver"] == "nvidia" and "gpu" in device["capabilities"] for device in devices
    )
    assert "ports" not in service  # the server trusts every client: never publish it
    assert "HF_TOKEN" in service["environment"]


def test_compose_caddy_terminates_tls_for_phonebridge() -> None:
    caddy = compose()["services"]["caddy"]
    assert any(str(port).startswith("443:") for port in caddy["ports"])
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert "reverse_proxy phonebridge:8080" in caddyfile
    assert "{$BRIDGE_DOMAIN}" in caddyfile
    assert "BRIDGE_DOMAIN" in caddy["environment"]


@pytest.mark.interop
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed: structure is checked by the tests above")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    env_file = tmp_path / "env"
    env_file.write_text("BRIDGE_DOMAIN=bridge.example.com\nHF_TOKEN=placeholder\n")
    result = subprocess.run(
        [
            docker,
            "compose",
            *("-f", str(DEPLOY / "docker-compose.yml"), "--env-file", str(env_file)),
            *("config", "--quiet", "--no-interpolate"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# -- Dockerfiles ---------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerignore_allows(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(
            relative.split("/", maxsplit=1)[0], pattern
        ):
            allowed = negated
    return allowed


def copied_sources(path: Path) -> list[str]:
    sources: list[str] = []
    for keyword, rest in instructions(path):
        if keyword in ("COPY", "ADD"):
            words = shlex.split(rest)
            if any(word.startswith("--from") for word in words):
                continue  # from another stage, not from the build context
            sources.extend(word for word in words[:-1] if not word.startswith("--"))
    return sources


def test_dockerfile_copies_only_existing_allowed_files() -> None:
    sources = copied_sources(DEPLOY / "Dockerfile")
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source), f"/.dockerignore excludes {source}"
    # setuptools needs the readme named in pyproject.toml to build the wheel.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources


def test_dockerignore_keeps_secrets_and_data_out() -> None:
    for private in (".env", "data/phonebridge.db", ".venv/bin/python", ".git/config", "tests"):
        assert not dockerignore_allows(private), private


def test_dockerfile_runtime() -> None:
    steps = instructions(DEPLOY / "Dockerfile")
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert all(base.split()[0].startswith("python:3.11-slim") for base in froms)
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert "--no-install-recommends libopus0" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    last = dict(steps)  # the last value of each instruction wins
    assert last["ENTRYPOINT"] == '["phonebridge", "serve"]'
    assert last["EXPOSE"] == "8080"
    assert last["USER"].split(":")[0] not in ("0", "root")
    assert "/healthz" in last["HEALTHCHECK"]
    assert "PHONEBRIDGE_HOST=0.0.0.0" in " ".join(rest for k, rest in steps if k == "ENV")
    cmd = yaml.safe_load(last["CMD"])  # a JSON array is YAML too
    assert serve_flags(cmd).drain_seconds > 0
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "phonebridge" in scripts


def test_personaplex_dockerfile_runs_the_server_on_8998() -> None:
    steps = dict(instructions(DEPLOY / "personaplex" / "Dockerfile"))
    assert "moshi.server" in steps["ENTRYPOINT"]
    assert steps["EXPOSE"] == "8998"
    assert not copied_sources(DEPLOY / "personaplex" / "Dockerfile")


# -- systemd -------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / "phonebridge.service").read_text())
    return parser


def test_systemd_unit_has_the_required_keys() -> None:
    parsed = unit()
    assert set(parsed.sections()) == {"Unit", "Service", "Install"}
    service = parsed["Service"]
    for key, value in {
        "EnvironmentFile": "/etc/phonebridge/env",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "DynamicUser": "yes",
    }.items():
        assert service[key] == value, key
    assert "/var/lib/phonebridge" in service["ReadWritePaths"]
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_stop_timeout_outlasts_the_drain() -> None:
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/phonebridge")
    assert command[1] == "serve"
    drain = serve_flags(command[2:]).drain_seconds
    assert int(service["TimeoutStopSec"]) >= drain + UVICORN_MARGIN_SECONDS


# -- .env.example ----------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, line
            assert name not in values, f"{name} twice"
            values[name.strip()] = value.strip()
    return values


def variables_named_in_config() -> set[str]:
    # The package's modules (its __init__ only re-exports: "TWILIO_PREFIX" is a name there).
    modules = (ROOT / "phonebridge" / "config").glob("[!_]*.py")
    source = "".join(path.read_text() for path in modules)
    names = set(re.findall(r"\"((?:PHONEBRIDGE|TWILIO|PERSONAPLEX|POLARGRID)_[A-Z_]+)\"", source))
    names |= set(re.findall(r"\"(FAL_KEY|DATABASE_URL)\"", source))
    return names


def test_env_example_lists_every_setting() -> None:
    named = variables_named_in_config()
    assert len(named) >= 20  # the grep found the settings, not nothing
    listed = set(env_example())
    assert named <= listed
    assert listed >= config.KNOWN_VARIABLES
    assert listed - config.KNOWN_VARIABLES == COMPOSE_ONLY_VARIABLES


def test_env_example_is_a_valid_start_once_the_token_is_set() -> None:
    environ = env_example() | {"TWILIO_AUTH_TOKEN": "placeholder"}
    Settings.from_env(environ)
    assert config.unknown_variables(environ) == []


SECRET_SHAPES = (
    re.compile(r"AC[0-9a-f]{32}"),  # Twilio account SID
    re.compile(r"\b[0-9a-f]{32}\b"),  # Twilio auth token
    re.compile(r"pg_[A-Za-z0-9]{8,}"),  # PolarGrid key
    re.compile(r"hf_[A-Za-z0-9]{8,}"),  # Hugging Face token
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:"),  # fal key
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # a password in a URL
)


@pytest.mark.parametrize(
    "path",
    [
        ROOT / ".env.example",
        K8S / "secret.example.yaml",
        K8S / "configmap-settings.yaml",
        K8S / "dev" / "postgres.yaml",
        DEPLOY / "docker-compose.yml",
        DEPLOY / "systemd" / "phonebridge.service",
    ],
    ids=lambda path: path.name,
)
def test_no_real_looking_secrets(path: Path) -> None:
    text = path.read_text()
    for shape in SECRET_SHAPES:
        assert not shape.search(text), f"{path.name}: {shape.pattern}"


def test_env_example_secrets_are_empty() -> None:
    values = env_example()
    for name in (
        "TWILIO_AUTH_TOKEN",
        "POLARGRID_API_KEY",
        "FAL_KEY",
        "PHONEBRIDGE_DASHBOARD_TOKEN",
        "PHONEBRIDGE_TRANSCRIBE_KEY",
        "HF_TOKEN",
    ):
        assert values[name] == "", name


# -- the guide -----------------------------------------------------------------------


def test_guide_covers_the_essentials() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text()
    for metric in METRICS:
        assert f"`{metric}" in guide, metric
    for needed in (
        "phonebridge twilio configure --number",
        "PHONEBRIDGE_PUBLIC_URL",
        "PERSONAPLEX_URLS",
        "POLARGRID_API_KEY",
        "FAL_KEY",
        "HF_TOKEN",
        "SIGTERM",
        "--drain-seconds",
    ):
        assert needed in guide, needed


def test_workers_caddyfile_sends_each_worker_its_own_streams() -> None:
    """`serve --workers`: worker N (port 8080 + N) is replica wN, as config.sticky_prefix."""
    caddyfile = (DEPLOY / "Caddyfile.workers").read_text()
    routes = re.findall(r"^\t\t(w\d+) 127\.0\.0\.1:(\d+)$", caddyfile, flags=re.MULTILINE)
    assert routes == [("w0", "8080"), ("w1", "8081")]
    for replica, port in routes:
        worker = int(replica[1:])
        assert int(port) == 8080 + worker
        settings = Settings.from_env(
            {"TWILIO_AUTH_TOKEN": "x"}, public_url="https://b.example.com", worker=worker
        )
        assert settings.sticky_prefix == f"/twilio/r/{replica}"
    # Everything else (webhooks, dashboard) is balanced over all workers.
    assert "reverse_proxy 127.0.0.1:8080 127.0.0.1:8081" in caddyfile
