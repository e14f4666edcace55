"""Static checks of the container topology under ``docker/`` (compose file, image, env example, init scripts).

No Docker engine and no network: the files are parsed and checked against what the code, Airflow's config
templates, the installed providers, ``airflow_settings.yaml`` and the lock files say. Whether the image builds
and the services start is NOT tested here (see docker/README.md).
"""
from __future__ import annotations

import importlib.util
import json
import re
import runpy
import shutil
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from lifecycle.paths import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_CPU = DOCKER / "compose.cpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker", "airflow-worker-gpu"}
SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "minio", "minio-init", "mlflow", "gateway", "alert-receiver"}
ONE_SHOT = {"airflow-init", "minio-init"}
#: Services running our image (docker/Dockerfile) and the Dockerfile stage each one uses.
OUR_IMAGE = {**dict.fromkeys(AIRFLOW_SERVICES, "airflow"), "mlflow": "mlflow", "gateway": "gateway",
             "alert-receiver": "gateway"}
#: The shared state folder (LIFECYCLE_HOME) is mounted in every Airflow service and the gateway.
STATE_MOUNT = "lifecycle-state:/opt/lifecycle-state"
VOLUMES = {"postgres-data", "redis-data", "minio-data", "lifecycle-state"}
DATABASES = {"airflow", "mlflow", "lifecycle"}
BUCKETS = {"mlflow-artifacts", "lifecycle-archive"}
#: Required secrets of docker/.env: compose must stop (${VAR:?...}) when one is unset.
SECRETS = {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "LIFECYCLE_DB_PASSWORD",
           "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
           "AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD", "LIFECYCLE_GATEWAY_TOKEN", "LIFECYCLE_FEEDBACK_TOKEN"}
#: The environment contract every Airflow component shares (values that must be exactly these).
AIRFLOW_CONTRACT = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__CORE__DAGS_FOLDER": "/opt/lifecycle/dags",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "/opt/lifecycle/plugins",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "LIFECYCLE_HOME": "/opt/lifecycle-state",
    "LIFECYCLE_TRACKING_URI": "http://mlflow:5000",
}
AIRFLOW_REQUIRED = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND",
                    "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "LIFECYCLE_DB_URL", "LIFECYCLE_PRELOAD"}
#: Where the code lives that reads LIFECYCLE_* variables.
SOURCE_DIRS = ("include", "plugins", "dags", "airflow_config")

_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
_BARE_VAR = re.compile(r"(?<!\$)\$[A-Za-z_]")
_AIRFLOW_OPTION = re.compile(r"\bAIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)\b")


class _Reset:
    """Compose's ``!reset`` tag (an override removing a key)."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader that knows one tag more


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _queues(service: dict[str, Any]) -> set[str]:
    command = _command(service)
    assert command[:3] == ["airflow", "celery", "worker"], command
    return set(command[command.index("--queues") + 1].split(","))


def _substitute(value: str, fill: str = "x") -> str:
    """A compose value with every ${VAR...} replaced, as compose would after reading docker/.env."""
    return _VAR.sub(fill, value)


def _settings() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "airflow_settings.yaml").read_text())["airflow"]


def _uncommented(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"docker/.env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def _pin(requirements: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==([^\s;#]+)", requirements, re.M)
    assert match, f"no {name}== pin"
    return match.group(1)


def _dockerfile_lines() -> list[str]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return lines


@cache
def _airflow_options() -> dict[str, set[str]]:
    """Every ``[section] option`` of Airflow core's config.yml and of the providers requirements.lock pins."""
    core = metadata.distribution("apache-airflow-core")
    sections: dict[str, set[str]] = {}
    config = yaml.safe_load(Path(core.locate_file("airflow/config_templates/config.yml")).read_text())
    for name, section in config.items():
        sections.setdefault(name, set()).update(section.get("options") or {})
    locked = set(re.findall(r"^(apache-airflow-providers-[a-z0-9-]+)==", (PROJECT_ROOT / "requirements.lock")
                            .read_text(), re.M))
    for provider in sorted(locked):
        dist = metadata.distribution(provider)
        info_file = next(f for f in dist.files or [] if str(f).endswith("get_provider_info.py"))
        info = runpy.run_path(str(dist.locate_file(info_file)))["get_provider_info"]()
        for name, section in (info.get("config") or {}).items():
            sections.setdefault(name, set()).update(section.get("options") or {})
    return sections


def _docker_texts() -> dict[str, str]:
    files = [COMPOSE, COMPOSE_CPU, DOCKERFILE, DOCKER / "airflow-init.sh", ENV_EXAMPLE]
    return {str(f.relative_to(PROJECT_ROOT)): f.read_text() for f in files}


# --- compose: services, volumes, health, dependencies -------------------------------------------------------


def test_compose_has_every_service_and_named_volume(compose, services):
    assert "version" not in compose, "the compose spec has no `version:` key"
    assert set(services) == SERVICES
    assert set(compose["volumes"]) == VOLUMES
    assert "x-airflow-common" in compose, "the shared Airflow settings are the x-airflow-common anchor"
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert source.startswith("./") or source in VOLUMES, f"{name}: undeclared volume {source}"


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service, name
            assert service.get("restart") == "no", f"{name} is one-shot: restart must be 'no'"
        else:
            test = (service.get("healthcheck") or {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name


def test_healthchecks_probe_the_right_endpoints(services):
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "http://localhost:8080/api/v2/monitor/health" in probe("airflow-apiserver")
    assert "http://localhost:5000/health" in probe("mlflow")
    assert "http://localhost:8000/healthz" in probe("gateway")
    assert 'Route("/healthz"' in (PROJECT_ROOT / "include/lifecycle/serving/app.py").read_text()
    assert "pg_isready" in probe("postgres") and "redis-cli ping" in probe("redis")
    assert "http://localhost:8974/health" in probe("airflow-scheduler")
    assert _env(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    assert "DagProcessorJob" in probe("airflow-dag-processor")
    assert "TriggererJob" in probe("airflow-triggerer")
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        assert "inspect ping" in probe(worker)
    celery_app = probe("airflow-worker").split("--app ")[1].split()[0]
    module, _, attr = celery_app.rpartition(".")
    source = Path(importlib.util.find_spec(module).origin).read_text()
    assert re.search(rf"^{attr} = ", source, re.M), f"{celery_app} does not exist"


def test_dependencies_wait_for_health_or_completion(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            want = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert spec == {"condition": want}, f"{name} -> {target}: {spec}"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert "airflow-init" in services[name]["depends_on"], f"{name} must wait for airflow-init"
    assert "minio-init" in services["mlflow"]["depends_on"]


# --- our image ----------------------------------------------------------------------------------------------


def test_every_service_of_our_image_builds_from_docker_dockerfile(services):
    stages = {m.group(1) for m in re.finditer(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)}
    by_image: dict[str, dict] = {}
    for name, service in services.items():
        if name not in OUR_IMAGE:
            assert "build" not in service, name
            continue
        build = service["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == PROJECT_ROOT, name
        assert (PROJECT_ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] == OUR_IMAGE[name] and build["target"] in stages, name
        # Services sharing an image tag must build it identically (else the last build wins the tag).
        assert by_image.setdefault(service["image"], build) == build, f"{name}: {service['image']} built two ways"


def test_dockerfile_base_tag_matches_the_airflow_pin():
    airflow = _pin((PROJECT_ROOT / "requirements.txt").read_text(), "apache-airflow")
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)
    official = [b for b in bases if b.startswith("apache/airflow:")]
    assert official == [f"apache/airflow:{airflow}-python3.11"], bases
    assert re.search(r'requires-python = ">=3\.11"', (PROJECT_ROOT / "pyproject.toml").read_text())


def test_dockerfile_installs_exactly_requirements_lock():
    lines = _dockerfile_lines()
    text = "\n".join(lines)
    assert "requirements.txt" not in text and "requirements-dev" not in text, "the image installs the lock only"
    assert any(re.match(r"COPY .*\brequirements\.lock /opt/lifecycle/requirements\.lock$", x) for x in lines)
    # Everything but torch from the lock, exactly; torch at the lock's version from TORCH_INDEX; then a check.
    assert "grep -v '^torch==' /opt/lifecycle/requirements.lock > /tmp/requirements-without-torch.txt" in text
    assert "uv pip install --no-cache -r /tmp/requirements-without-torch.txt" in text
    assert re.search(r"torch_version=.*'s/\^torch==.*/opt/lifecycle/requirements\.lock", text)
    assert '--index-url "${TORCH_INDEX}" "torch==${torch_version}"' in text
    assert "python /opt/lifecycle/docker/verify_stack.py /opt/lifecycle/requirements.lock" in text
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+$", text, re.M)
    installs = re.findall(r"(?:uv )?pip install[^;&]*", text)
    assert len(installs) == 3, installs  # the lock without torch, torch, the project (--no-deps)
    for install in installs:
        for req in re.findall(r"-r\s+(\S+)", install):
            assert req == "/tmp/requirements-without-torch.txt", install
        assert not re.search(r"\s(-c|--constraints?)[\s=]", install), "no second set of pins next to the lock"


def test_dockerfile_installs_the_project_and_its_airflow_settings():
    lines = _dockerfile_lines()
    text = "\n".join(lines)
    copied = set()
    for line in lines:
        if line.startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            copied.update(parts[:-1])
    assert {"dags", "plugins", "include", "airflow_config", "airflow_settings.yaml", "pyproject.toml"} <= copied
    for source in copied:
        assert (PROJECT_ROOT / source).exists(), f"COPY of a missing {source}"
    assert "uv pip install --no-cache --no-deps --no-build-isolation -e /opt/lifecycle" in text
    assert ('ln -sf /opt/lifecycle/airflow_config/airflow_local_settings.py '
            '"${AIRFLOW_HOME}/config/airflow_local_settings.py"') in text
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/lifecycle/dags" in text
    assert "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/lifecycle/plugins" in text
    gateway = text.split("AS gateway", 1)[1].split("FROM ", 1)[0]
    assert '"python", "-m", "lifecycle.serving", "--host", "0.0.0.0", "--port", "8000"' in gateway
    assert '"mlflow", "server"' in text.split("AS mlflow", 1)[1].split("FROM ", 1)[0]
    # The build context is the repository: the Dockerfile's own ignore file lets through what it copies only.
    ignore = [x.strip() for x in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
              if x.strip() and not x.startswith("#")]
    assert ignore[0] == "*", "an allow-list: everything is excluded first"
    allowed = {x[1:].rstrip("/") for x in ignore if x.startswith("!")}
    assert copied == allowed, "Dockerfile.dockerignore must let through exactly what the Dockerfile copies"


def test_verify_stack_compares_the_lock_with_what_is_installed(tmp_path):
    spec = importlib.util.spec_from_file_location("verify_stack", DOCKER / "verify_stack.py")
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    lock = "Foo_Bar==1.2\n    # via x\ntorch==2.13.0+cpu\n# comment\n--index-url https://x\nbaz[extra]==3\n"
    pins = verify.parse_lock(lock)
    assert pins == {"foo-bar": "1.2", "torch": "2.13.0+cpu", "baz": "3"}
    installed = {"foo-bar": "1.2", "torch": "2.13.0+cu128", "baz": "4"}
    assert verify.mismatches(pins, installed.get) == ["baz: 4 installed, lock pins 3"]
    assert verify.mismatches({"gone": "1"}, installed.get) == ["gone: not installed (lock pins 1)"]
    assert verify.parse_lock((PROJECT_ROOT / "requirements.lock").read_text())["torch"].startswith(
        _pin((PROJECT_ROOT / "requirements.txt").read_text(), "torch"))


# --- workers and queues -------------------------------------------------------------------------------------


def test_gpu_worker_reserves_the_gpus_and_serves_only_the_training_queue(services):
    from lifecycle.spec import TrainingConfig, load_specs

    gpu, cpu = services["airflow-worker-gpu"], services["airflow-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert _queues(gpu) == {"gpu"}
    command = _command(gpu)
    assert command[command.index("--concurrency") + 1] == "1"
    assert "gpu" not in _queues(cpu) and "deploy" not in cpu
    # The queue the training task is sent to (spec field training.queue) is the GPU worker's.
    assert TrainingConfig().queue == "gpu"
    for spec in load_specs():
        assert spec.training.queue in _queues(gpu), spec.name
    # Every other task goes to Airflow's default queue, which the CPU worker serves.
    default_queue = _airflow_default("operators", "default_queue")
    assert _queues(cpu) == {default_queue}
    # PyTorch's CUDA build on the GPU worker, the CPU build everywhere else.
    assert "/whl/cu" in gpu["build"]["args"]["TORCH_INDEX"]
    assert "/whl/cpu" in cpu["build"]["args"]["TORCH_INDEX"]
    assert gpu["image"] != cpu["image"]


def _airflow_default(section: str, option: str) -> str:
    core = metadata.distribution("apache-airflow-core")
    config = yaml.safe_load(Path(core.locate_file("airflow/config_templates/config.yml")).read_text())
    return config[section]["options"][option]["default"]


def _merge(base: Any, override: Any) -> Any:
    if isinstance(override, _Reset):
        return None
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value)
        return {k: v for k, v in merged.items() if v is not None}
    return override


def test_cpu_override_keeps_the_gpu_queue_without_the_reservation(services):
    override = _load(COMPOSE_CPU)["services"]
    assert set(override) == {"airflow-worker-gpu"}
    worker = _merge(services["airflow-worker-gpu"], override["airflow-worker-gpu"])
    assert "deploy" not in worker
    assert _queues(worker) == {"gpu"}
    # It becomes the CPU image the other Airflow services use (one image, built once).
    assert worker["image"] == services["airflow-worker"]["image"]
    assert worker["build"] == services["airflow-worker"]["build"]


# --- the environment contract -------------------------------------------------------------------------------


def test_every_airflow_service_shares_the_environment_contract(services):
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        for key, value in AIRFLOW_CONTRACT.items():
            assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}"
        assert set(env) >= AIRFLOW_REQUIRED, f"{name} lacks {sorted(AIRFLOW_REQUIRED - set(env))}"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")
        assert env["LIFECYCLE_DB_URL"].startswith("postgresql://lifecycle:")
        assert env["LIFECYCLE_DB_URL"].endswith("@postgres:5432/lifecycle")
        assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) > 0
        assert STATE_MOUNT in services[name]["volumes"], name
    gateway = _env(services["gateway"])
    assert STATE_MOUNT in services["gateway"]["volumes"]
    for key in ("LIFECYCLE_HOME", "LIFECYCLE_TRACKING_URI"):
        assert gateway[key] == AIRFLOW_CONTRACT[key]
    assert gateway["LIFECYCLE_DB_URL"] == _env(services["airflow-scheduler"])["LIFECYCLE_DB_URL"]
    assert gateway["LIFECYCLE_GATEWAY_TOKEN"].startswith("${LIFECYCLE_GATEWAY_TOKEN:?")
    assert _command(services["gateway"]) == ["python", "-m", "lifecycle.serving", "--host", "0.0.0.0",
                                             "--port", "8000"]


def test_every_airflow_option_exists_in_airflow_or_a_locked_provider():
    sections = _airflow_options()
    assert "broker_url" in sections["celery"], "the celery provider's config was not found"
    found = set()
    for name, text in _docker_texts().items():
        for section, option in _AIRFLOW_OPTION.findall(text):
            found.add((name, section.lower(), option.lower()))
    assert len(found) > 15
    unknown = sorted(f"{name}: AIRFLOW__{s.upper()}__{o.upper()}" for name, s, o in found
                     if o not in sections.get(s, set()))
    assert not unknown, f"options Airflow does not have: {unknown}"


def test_every_lifecycle_variable_set_is_read_by_the_code(services):
    names = {key for service in services.values() for key in _env(service) if key.startswith("LIFECYCLE_")}
    names |= set(re.findall(r"\b(LIFECYCLE_[A-Z_]+)=", DOCKERFILE.read_text()))
    assert {"LIFECYCLE_HOME", "LIFECYCLE_DB_URL", "LIFECYCLE_TRACKING_URI", "LIFECYCLE_GATEWAY_TOKEN",
            "LIFECYCLE_PRELOAD"} <= names
    sources = "\n".join(p.read_text() for d in SOURCE_DIRS for p in (PROJECT_ROOT / d).rglob("*.py"))
    unread = sorted(n for n in names if not re.search(rf"""["']{n}["']""", sources))
    assert not unread, f"set in docker/ but read nowhere in {SOURCE_DIRS}: {unread}"


def test_connections_match_airflow_settings(services):
    from lifecycle.spec import AlertConfig, RetirementPolicy

    settings = {c["conn_id"]: c for c in _settings()["connections"]}
    # The connections the specs use by default but that local runs leave out of airflow_settings.yaml.
    by_spec = {AlertConfig().webhook_conn_id, RetirementPolicy().aws_conn_id}
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        conns = {k.removeprefix("AIRFLOW_CONN_").lower(): json.loads(_substitute(v))
                 for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
        assert set(conns) == set(settings) | by_spec, name
        for conn_id, conn in conns.items():
            if conn_id in settings:
                assert conn["conn_type"] == settings[conn_id]["conn_type"], conn_id
    env = _env(services["airflow-worker"])
    gateway = json.loads(_substitute(env["AIRFLOW_CONN_LIFECYCLE_GATEWAY"]))
    assert (gateway["host"], gateway["port"]) == ("gateway", 8000)
    assert "${LIFECYCLE_GATEWAY_TOKEN:?" in env["AIRFLOW_CONN_LIFECYCLE_GATEWAY"], "password = the admin token"
    archive = json.loads(_substitute(env["AIRFLOW_CONN_LIFECYCLE_ARCHIVE"]))
    assert archive["conn_type"] == "aws" and archive["extra"]["endpoint_url"] == "http://minio:9000"
    assert "${MINIO_ROOT_USER:?" in env["AIRFLOW_CONN_LIFECYCLE_ARCHIVE"]
    assert "${MINIO_ROOT_PASSWORD:?" in env["AIRFLOW_CONN_LIFECYCLE_ARCHIVE"]
    alerts = json.loads(_VAR.sub(lambda m: m.group(2).removeprefix(":-"), env["AIRFLOW_CONN_LIFECYCLE_ALERTS"]))
    assert alerts["host"] == "http://alert-receiver:8799" and alerts["extra"]["endpoint"] == "/alerts"
    assert "--port" not in " ".join(_command(services["alert-receiver"]))
    assert "port=8799" in " ".join(_command(services["alert-receiver"]))


def test_airflow_init_migrates_and_creates_the_pools_of_airflow_settings(services):
    init = services["airflow-init"]
    assert _command(init) == ["bash", "/opt/lifecycle/docker/airflow-init.sh"]
    script = (DOCKER / "airflow-init.sh").read_text()
    assert "airflow db migrate" in script
    for pool in _settings()["pools"]:
        assert re.search(rf"^airflow pools set {pool['pool_name']} ", script, re.M), pool["pool_name"]
    assert 'airflow pools set gpu "${GPU_SLOTS:-1}"' in script
    env = _env(init)
    used = {m.group(1) for m in _VAR.finditer(script)} | set(re.findall(r'os\.environ(?:\.get\(|\[)"(\w+)"',
                                                                          script))
    assert used - {"bad"} <= set(env), f"airflow-init.sh reads unset {sorted(used - {'bad'} - set(env))}"


def test_postgres_creates_the_three_databases_the_urls_name(services):
    script = (DOCKER / "postgres-init.sh").read_text()
    created = dict(re.findall(r'^lifecycle_create_db (\w+) "\$\{(\w+)\}"', script, re.M))
    assert set(created) == DATABASES
    postgres = services["postgres"]
    assert "./postgres-init.sh:/docker-entrypoint-initdb.d/10-lifecycle-databases.sh:ro" in postgres["volumes"]
    assert set(created.values()) <= set(_env(postgres))
    urls = [v for s in services.values() for v in [*_env(s).values(), *_command(s)] if "@postgres:5432/" in v]
    assert urls
    for url in urls:
        user, database = re.search(r"://(\w+):.*@postgres:5432/(\w+)$", url).groups()
        assert user == database and database in DATABASES, url


def test_minio_buckets_and_mlflow_server(services):
    script = " ".join(_command(services["minio-init"]))
    assert set(re.findall(r"mc mb --ignore-existing lifecycle/([\w-]+)", script)) == BUCKETS
    command = _command(services["mlflow"])
    assert command[:2] == ["mlflow", "server"]
    arg = dict(zip(command[2::2], command[3::2], strict=False))
    assert "--backend-store-uri" not in arg and not any("PASSWORD" in c for c in command), \
        "a DB password on the command line shows in ps: the backend store URL goes in the environment"
    assert arg["--artifacts-destination"] == "s3://mlflow-artifacts"
    assert (arg["--host"], arg["--port"]) == ("0.0.0.0", "5000")
    env = _env(services["mlflow"])
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"].startswith("${MINIO_ROOT_USER")
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD")
    # The Host header the other containers send must pass MLflow's DNS-rebinding check.
    default_hosts = _VAR.fullmatch(env["MLFLOW_SERVER_ALLOWED_HOSTS"]).group(2).removeprefix(":-").split(",")
    assert "mlflow:5000" in default_hosts


# --- docker/.env ----------------------------------------------------------------------------------------------


def test_env_example_lists_every_variable_compose_reads_and_no_secret():
    text = _uncommented(COMPOSE) + "\n" + _uncommented(COMPOSE_CPU)
    assert not _BARE_VAR.search(text), "use ${VAR} (or $$ for the container's shell), not $VAR"
    referenced = {m.group(1) for m in _VAR.finditer(text)}
    example = _env_example()
    assert referenced == set(example), (f"missing from .env.example: {sorted(referenced - set(example))}; "
                                        f"unused: {sorted(set(example) - referenced)}")
    required = {m.group(1) for m in _VAR.finditer(text) if m.group(2).startswith(":?")}
    assert required == SECRETS
    for name, value in example.items():
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", name):
            assert value == "" or value.startswith("change-me"), f"{name} looks like a real secret"
        looks_random = re.fullmatch(r"[A-Za-z0-9_+/=-]{16,}", value) and re.search(r"\d", value) \
            and re.search(r"[A-Za-z]", value)
        assert not looks_random, f"{name}={value!r} looks like a real secret"
    # The optional values match the defaults compose falls back to.
    for m in _VAR.finditer(text):
        if m.group(2).startswith(":-") and m.group(2)[2:]:
            assert example[m.group(1)] == m.group(2)[2:], m.group(1)


def test_docker_env_is_git_ignored():
    assert "docker/.env" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()


def test_shell_scripts_parse():
    bash = shutil.which("bash")
    assert bash
    for script in ("airflow-init.sh", "postgres-init.sh"):
        done = subprocess.run([bash, "-n", str(DOCKER / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
