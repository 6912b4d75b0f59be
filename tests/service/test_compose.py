"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine runs here):
the environment the containers get must be what service.settings reads, the commands must be ones
the flowsweep CLI accepts, and the topology issue 4 asks for must be there."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from flowsweep.service import cli
from flowsweep.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FLOWSWEEP_SERVICES = ("migrate", "ray-head", "ray-worker", "api")
RAY_PROCESSES = ("ray-head", "ray-worker", "api")  # every container that runs a Ray process


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default}, with `env` standing for the shell."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        if op == ":?":  # compose refuses to start: unset or empty
            if not env.get(name):
                raise MissingVariable(f"{name}: {default}")
            return env[name]
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", sub, value)


class MissingVariable(ValueError):
    """What `docker compose up` reports for ${VAR:?message} when VAR is unset or empty."""


SECRETS = {"FLOWSWEEP_API_TOKEN": "t0ken", "POSTGRES_PASSWORD": "pw"}


def environment(service: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def command(service: dict) -> list[str]:
    cmd = service["command"]
    return [interpolate(c) for c in (shlex.split(cmd) if isinstance(cmd, str) else cmd)]


def settings_from(env: dict[str, str], monkeypatch) -> Settings:
    """Build Settings exactly as the container's process would, from its environment only."""
    import os

    for name in list(os.environ):
        if name.startswith("FLOWSWEEP_") or name == "RAY_ADDRESS":
            monkeypatch.delenv(name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


def test_topology_has_every_service(services):
    assert set(services) >= {"postgres", *FLOWSWEEP_SERVICES}
    # one image for the API, the migration and every Ray node: a driver and its workers must match
    images = {(services[s].get("build"), services[s].get("image")) for s in FLOWSWEEP_SERVICES}
    assert images == {(".", "flowsweep:latest")}


def test_postgres_has_a_healthcheck_everyone_waits_for(services):
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    for name in ("migrate", "api"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_migrate_is_a_one_shot_flowsweep_db_upgrade(services):
    mig = services["migrate"]
    cmd = command(mig)
    assert cmd == ["flowsweep", "db", "upgrade"]
    args = cli.build_parser().parse_args(cmd[1:])  # the real CLI accepts it
    assert args.func is cli.cmd_db_upgrade
    assert mig.get("restart", "no") == "no"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_refuses_to_start_without_a_token_and_a_password(services):
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(MissingVariable, match=missing):
            environment(services["api"], env)
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        environment(services["postgres"], {})
    # published on loopback only unless told otherwise
    (port,) = services["api"]["ports"]
    assert interpolate(port).startswith("127.0.0.1:")
    assert interpolate(port, {"FLOWSWEEP_PUBLISH_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:")


def test_api_environment_is_what_settings_reads(services, monkeypatch):
    api = services["api"]
    env = environment(api, SECRETS)
    fields = set(Settings.model_fields)
    prefix = Settings.model_config["env_prefix"]
    for name in env:
        if name.startswith(prefix):
            assert name[len(prefix) :].lower() in fields, f"{name} is not a flowsweep setting"
    assert "RAY_ADDRESS" in env

    s = settings_from(env, monkeypatch)
    url = make_url(s.database_url)
    pg_env = environment(services["postgres"], SECRETS)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
    )
    assert s.auto_migrate is False  # the migrate service owns the schema
    assert s.api_token == SECRETS["FLOWSWEEP_API_TOKEN"]
    assert s.host == "0.0.0.0"
    published = [str(p) for p in api["ports"]]
    assert any(interpolate(p).endswith(f":{s.port}") for p in published)

    # the API reaches Ray at the head's GCS port, and the head listens there
    head_port = next(c.split("=", 1)[1] for c in command(services["ray-head"]) if c.startswith("--port="))
    assert s.ray_address == f"ray-head:{head_port}"
    # a password in the compose shell environment reaches both sides
    s2 = settings_from(environment(api, {**SECRETS, "POSTGRES_PASSWORD": "s3cret"}), monkeypatch)
    assert (
        make_url(s2.database_url).password
        == environment(services["postgres"], {"POSTGRES_PASSWORD": "s3cret"})["POSTGRES_PASSWORD"]
    )
    assert {"localhost", "127.0.0.1"} <= s.trusted_hosts()


def test_migrate_gets_the_same_database_as_the_api(services, monkeypatch):
    api_url = settings_from(environment(services["api"], SECRETS), monkeypatch).database_url
    assert settings_from(environment(services["migrate"], SECRETS), monkeypatch).database_url == api_url


def test_api_serves_after_joining_the_cluster(services):
    api = services["api"]
    script = command(api)
    text = script[-1] if script[:2] == ["sh", "-c"] else " ".join(script)
    assert text.rstrip().endswith("flowsweep serve")
    assert cli.build_parser().parse_args(["serve"]).func is cli.cmd_serve
    assert "ray start --address=ray-head:6379" in text
    assert api["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_ray_nodes_scale_and_have_shared_memory(services):
    head, worker = services["ray-head"], services["ray-worker"]
    assert command(head)[:3] == ["ray", "start", "--head"] and "--block" in command(head)
    wcmd = command(worker)
    assert wcmd[:2] == ["ray", "start"] and "--address=ray-head:6379" in wcmd and "--block" in wcmd
    assert isinstance(worker["deploy"]["replicas"], int) and worker["deploy"]["replicas"] >= 1
    # `--scale ray-worker=N` needs a worker without a fixed name or published port
    assert "container_name" not in worker and "ports" not in worker
    for name in RAY_PROCESSES:
        assert re.fullmatch(r"\d+(\.\d+)?[kmg]b?", str(services[name]["shm_size"]).lower())
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "ray" in head["healthcheck"]["test"] and "status" in head["healthcheck"]["test"]


def test_ray_auth_is_set_on_every_ray_process(services):
    # Ray 2.60 token auth: one mode for the whole cluster (STACK-NOTES); a mismatch hangs ~20 s then fails
    modes = {environment(services[s], SECRETS).get("RAY_AUTH_MODE") for s in RAY_PROCESSES}
    assert modes == {"disabled"}


def test_dockerfile_installs_the_package_and_its_entry_point():
    text = (REPO / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["flowsweep"] == "flowsweep.service.cli:main"
    m = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
    assert m and (int(m.group(1)), int(m.group(2))) >= (3, 11)
    # every folder that installs as part of `flowsweep` (package-dir maps them to flowsweep.*)
    packages = sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values()))
    assert "core" in packages and "flowsweep" in packages
    for pkg in packages:
        assert re.search(rf"^COPY {pkg} ", text, re.M), f"Dockerfile does not copy {pkg}/"
    assert re.search(r"^COPY pyproject.toml README.md ", text, re.M)  # README is the package's readme
    assert re.search(r"pip install \"?\.\[server[],]", text)  # the image runs the server
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert not set(packages) & set(ignored)
