"""The chart cannot drift from the code: the commands, flags, ports and environment it gives each container
must be the contract in ``services/roles.py``, and that contract must be what the real entry points accept
(``services.*`` click commands, ``iznet jobs worker``), what the Dockerfile builds, and what the settings read."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from services import roles
from iznet.config import Settings
from tests.chart.conftest import CHART, REPO, find, one, pod_spec

ROLE_COMMAND = ["python", "-m", "services.roles"]


def _iznet_containers(docs):
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet"}:
            for c in pod_spec(d)["containers"]:
                if c.get("command") == ROLE_COMMAND:
                    yield d, c


def _flags(args: list[str]) -> dict[str, str]:
    out = {}
    for a in args:
        assert a.startswith("--") and "=" in a, f"chart arguments are --flag=value, got {a!r}"
        k, v = a.split("=", 1)
        assert k not in out, f"{k} given twice"
        out[k] = v
    return out


def _iznet_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", []) if e["name"].startswith("IZNET_")}


# ------------------------------------------------------------------------------- chart == contract


def test_every_iznet_container_runs_a_role_of_the_contract(rendered):
    seen = set()
    for name, docs in rendered.items():
        for d, c in _iznet_containers(docs):
            role = roles.ROLES.get(c["args"][0])
            assert role is not None, f"{name}: {d['metadata']['name']} runs unknown role {c['args'][0]!r}"
            seen.add(role.name)
            where = f"{name}: {d['metadata']['name']}"
            flags = _flags(c["args"][1:])
            assert set(flags) == set(role.flags), (
                f"{where}: the chart passes {sorted(flags)}, the contract says {sorted(role.flags)}")
            env = _iznet_env(c)
            assert set(env) <= set(role.env), f"{where}: env {sorted(set(env) - set(role.env))} is not in the contract"
            assert set(role.env) - roles.OPTIONAL_ENV <= set(env), f"{where}: env missing"
            assert env["IZNET_STORE"]["value"] == roles.STORE_MOUNT
            assert {"name": "store", "mountPath": roles.STORE_MOUNT} in c["volumeMounts"]
            if role.port is None:
                assert not any(p in c for p in ("startupProbe", "livenessProbe", "readinessProbe", "ports"))
                continue
            assert flags["--port"] == str(role.port)
            if "--host" in role.flags:
                assert flags["--host"] == "0.0.0.0"
            if "--metrics-port" in flags:
                assert flags["--metrics-port"] == str(roles.METRICS_PORT)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports["grpc"] == role.port
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if role.probe == "grpc":  # native probe against grpc.health.v1.Health, the server as a whole
                    assert c[probe]["grpc"]["port"] == role.port, f"{where}: {probe} is not a gRPC probe"
                    assert c[probe]["grpc"].get("service", "") == ""
                else:
                    assert c[probe]["tcpSocket"]["port"] == role.port, f"{where}: {probe} is not a TCP probe"
    assert seen == set(roles.ROLES), f"roles the chart never runs: {set(roles.ROLES) - seen}"


def test_optional_env_is_set_by_some_configuration(rendered):
    """Each variable the contract calls optional is set by at least one of the checked value sets."""
    set_somewhere = {v for docs in rendered.values() for _d, c in _iznet_containers(docs) for v in _iznet_env(c)}
    assert roles.OPTIONAL_ENV <= set_somewhere, f"never set: {sorted(roles.OPTIONAL_ENV - set_somewhere)}"


def test_services_route_to_the_role_ports(rendered):
    for name, docs in rendered.items():
        for role in roles.ROLES.values():
            if role.port is None:
                continue
            svc = one(docs, "Service", f"rel-iznet-{role.name}")
            grpc = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"][0]
            assert grpc["targetPort"] in ("grpc", role.port), (name, role.name)
            assert grpc["appProtocol"] == "grpc"


def _check_address(docs, target: str, address: str) -> None:
    host, port = address.rsplit(":", 1)
    svc = one(docs, "Service", host)
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == target
    assert int(port) in [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"]


def test_the_gateway_is_pointed_at_the_rendered_services(rendered):
    for name, docs in rendered.items():
        for rs in find(docs, "RayService"):
            app = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]
            for target in ("detection", "embedding", "gallery"):
                _check_address(docs, target, app["args"][target])
            cluster = rs["spec"]["rayClusterConfig"]
            for tmpl in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
                env = _iznet_env(tmpl["spec"]["containers"][0])
                assert set(env) <= set(roles.ROLES["gateway"].env), (name, set(env))
        for d, c in _iznet_containers(docs):
            if c["args"][0] == "gateway":
                flags = _flags(c["args"][1:])
                for target in ("detection", "embedding", "gallery"):
                    _check_address(docs, target, flags[f"--{target}"])


def test_the_rayservice_deploys_the_contracts_serve_application(rendered):
    rs = one(rendered["kuberay"], "RayService", "rel-iznet-gateway")
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert [a["import_path"] for a in serve["applications"]] == [roles.GATEWAY_IMPORT_PATH]
    assert sorted(serve["applications"][0]["args"]) == sorted(roles.GATEWAY_BUILDER_ARGS)
    assert serve["grpc_options"]["port"] == roles.ROLES["gateway"].port
    assert serve["grpc_options"]["grpc_servicer_functions"] == [roles.GATEWAY_GRPC_SERVICER]
    # The servicer function Ray Serve's gRPC proxy registers exists in the generated code.
    mod, fn = roles.GATEWAY_GRPC_SERVICER.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(mod), fn))
    svc = one(rendered["kuberay"], "Service", "rel-iznet-gateway")
    assert svc["spec"]["selector"]["ray.io/serve"] == "true"
    ray_version = rs["spec"]["rayClusterConfig"]["rayVersion"]
    pins = re.findall(r'"ray\[serve\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert pins == [ray_version], "gateway.kuberay.rayVersion must equal the ray[serve] pin in pyproject.toml"


def test_the_gateway_module_matches_the_kuberay_contract(rendered):
    role = roles.ROLES["gateway"]
    _resolve(role)
    gateway = importlib.import_module("services.gateway")
    assert gateway.SERVICER_FUNCTION == roles.GATEWAY_GRPC_SERVICER
    # serveConfigV2 sizes the Serve deployment by its name.
    rs = one(rendered["kuberay"], "RayService", "rel-iznet-gateway")
    names = [d["name"] for d in yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]["deployments"]]
    assert names and all(f'@serve.deployment(name="{n}"' in Path(gateway.__file__).read_text() for n in names)
    fields = {f.name for f in dataclasses.fields(gateway.GatewayConfig)}
    assert set(roles.GATEWAY_BUILDER_ARGS) <= fields, set(roles.GATEWAY_BUILDER_ARGS) - fields
    mod, attr = roles.GATEWAY_IMPORT_PATH.split(":")
    assert mod == "services.gateway" and callable(getattr(gateway, attr, None)), roles.GATEWAY_IMPORT_PATH


def test_worker_queues_are_the_jobs_queues(rendered):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    queues = {q for w in values["workers"].values() for q in w["queues"]}
    from training.jobs.settings import QUEUES

    assert queues == set(QUEUES)
    for name, docs in rendered.items():
        for so in find(docs, "ScaledObject"):
            for t in so["spec"]["triggers"]:
                assert t["metadata"]["listName"] in QUEUES


# ------------------------------------------------------------------------------ image == contract


def test_the_dockerfile_builds_the_contract():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1)
    assert yaml.safe_load(entry) == ROLE_COMMAND
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert {r.port for r in roles.ROLES.values() if r.port} | {roles.METRICS_PORT} <= exposed
    user = re.findall(r"^USER (\d+)", text, re.M)[-1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(user) == values["podSecurityContext"]["runAsUser"]
    assert f"IZNET_STORE={roles.STORE_MOUNT}" in text
    torch_pin = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1)
    assert f"torch=={torch_pin}" in (REPO / "Makefile").read_text()
    assert f'"torch=={torch_pin}"' in (REPO / "pyproject.toml").read_text()
    # .dockerignore lets in exactly what the Dockerfile copies.
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for copied in line.split()[:-1]:
            assert any(copied == a or copied.startswith(a + "/") for a in allowed), f"{copied} is dockerignored"


def test_store_mount_in_chart_helpers_is_the_contracts():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.search(r'define "iznet.storeMount" -}}(\S+?){{', helpers).group(1) == roles.STORE_MOUNT


# ------------------------------------------------------------------------ contract == real entry points


def _resolve(role: roles.Role) -> list[click.Command]:
    """The click command behind a role and its parents (outermost first)."""
    mod_name, path = role.click_command.split(":")
    mod = importlib.import_module(mod_name)
    names = path.split()
    chain = [getattr(mod, names[0])]
    for sub in names[1:]:
        nxt = chain[-1].get_command(click.Context(chain[-1]), sub)
        assert nxt is not None, f"{role.click_command}: no subcommand {sub!r}"
        chain.append(nxt)
    return chain


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}


ROLE_NAMES = list(roles.ROLES)


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_contract_flags_are_options_of_the_real_command(name):
    role = roles.ROLES[name]
    cmd = _resolve(role)[-1]
    missing = [f for f in role.flags if f not in _options(cmd)]
    assert not missing, f"{role.click_command} has no option(s) {missing}, which the chart passes"


def _envvars_read(role: roles.Role, chain: list[click.Command]) -> set[str]:
    """Environment variables the role's command reads: the settings, explicit envvars of its options (and of
    its parent groups'), and click's automatic <env_prefix>_<OPTION> variables."""
    read = {f"IZNET_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    for cmd in chain:
        for p in cmd.params:
            if p.envvar:
                read |= {p.envvar} if isinstance(p.envvar, str) else set(p.envvar)
    read |= {f"{role.env_prefix}_{p.name.upper()}" for p in chain[-1].params if p.name}
    return read


def _check_env_prefix(role: roles.Role) -> None:
    """The prefix the contract assumes is the one the entry point really uses."""
    if role.argv[0] == "iznet":  # the CLI: IZNET plus the subcommand path
        assert role.env_prefix == "_".join(["IZNET", *(a.upper().replace("-", "_") for a in role.argv[1:])])
    else:
        assert _source_mentions(role, f'auto_envvar_prefix="{role.env_prefix}"'), (
            f"{role.click_command} is not run with auto_envvar_prefix={role.env_prefix!r}")


def _source_mentions(role: roles.Role, var: str) -> bool:
    top = role.click_command.split(":")[0].split(".")[0]
    roots = {REPO / top, REPO / "iznet"}
    return any(var in f.read_text(errors="ignore") for root in roots for f in root.rglob("*.py")
               if f.name != "roles.py")


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_contract_env_is_read_by_the_code(name):
    role = roles.ROLES[name]
    chain = _resolve(role)
    _check_env_prefix(role)
    read = _envvars_read(role, chain)
    unread = [v for v in role.env if v not in read and not _source_mentions(role, v)]
    assert not unread, f"{name}: the chart sets {unread}, which neither the settings, {role.click_command}'s " \
                       f"options nor the code read"


def test_the_worker_is_the_iznet_jobs_worker_command():
    role = roles.ROLES["worker"]
    from iznet.cli import COMMANDS

    assert role.argv[0] == "iznet" and importlib.util.find_spec("iznet.__main__")
    group = role.argv[1]
    assert COMMANDS[group] == role.click_command.split()[0]


# -------------------------------------------------------------------------------- the entry point runs


def _roles_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.roles", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_role_entry_point_lists_roles_and_refuses_unknown_ones():
    proc = _roles_cli("--help")
    assert proc.returncode == 0
    for r in roles.ROLES.values():
        assert r.name in proc.stdout and f"python -m {' '.join(r.argv)}" in proc.stdout
    bad = _roles_cli("recogniser")
    assert bad.returncode == 2 and "unknown role 'recogniser'" in bad.stderr
    assert _roles_cli().returncode == 2


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_role_entry_point_execs_the_real_server(name):
    """`python -m services.roles ROLE --help` replaces itself with the role's command, which lists the flags."""
    role = roles.ROLES[name]
    _resolve(role)
    proc = _roles_cli(name, "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in role.flags:
        assert flag in proc.stdout, f"`python -m services.roles {name} --help` does not mention {flag}"
