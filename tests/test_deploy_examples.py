"""The deployment examples in deploy/ agree with the code they run: every variable they set is a
setting, secrets come from a Secret, probes ask real routes, the command parses with the real
parser, and the time given to stop covers snapcopy's shutdown."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

from bot.app import STOP_WORK_SECONDS
from bot.cli import _parser
from bot.front import BufferedWsgi
from bot.front import server as front_server
from bot.policy import parse_policy
from bot.server import HEALTH_PATH, LIVE_PATH
from bot.settings import Settings, read_settings
from tests.harness import REPO_ROOT

pytestmark = pytest.mark.unit

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
SYSTEMD = REPO_ROOT / "deploy" / "systemd"
SECRET_EXAMPLE = "secret.example.yaml"

# Read when SNAPCOPY_DB is unset: the PostgreSQL database a platform attaches.
DATABASE_URL = "DATABASE_URL"
SETTINGS = frozenset({name.upper() for name in Settings.model_fields} | {DATABASE_URL})
# The fields Settings.secret_values() finds (SecretStr), and the URL with the database password.
SECRETS = frozenset(
    {
        name.upper()
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *get_args(field.annotation))
    }
    | {DATABASE_URL}
)
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Neither a Deployment nor a unit should give snapcopy less time to stop than this.
MIN_STOP_SECONDS = 30.0
# A liveness probe tolerates a Slack or database outage this long before it restarts anything.
MIN_LIVENESS_WINDOW_SECONDS = 120


def shutdown_seconds() -> float:
    """The longest a SIGTERM takes: uvicorn's graceful shutdown of requests in flight, then
    Runtime.close, where each queue's workers (DWS, Slack) and the sweeper wait up to
    STOP_WORK_SECONDS in turn."""
    graceful = front_server(BufferedWsgi(lambda environ, start_response: [])).config
    assert graceful.timeout_graceful_shutdown is not None, "shutdown must be bounded"
    return graceful.timeout_graceful_shutdown + 3 * STOP_WORK_SECONDS


def serve_args(argv: list[str]) -> argparse.Namespace:
    """`argv` parsed by bot/cli.py's own parser; it must be `snapcopy serve …`."""
    assert Path(argv[0]).name == "snapcopy", f"{shlex.join(argv)} does not run snapcopy"
    try:
        args = _parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"bot/cli.py does not accept `{shlex.join(argv)}`")
    assert args.command == "serve", f"{shlex.join(argv)} is not `snapcopy serve`"
    return args


def problems(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **overrides: Any) -> list[str]:
    """What start-up in HTTP mode would report with this environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, invalid = read_settings(**overrides)
    return invalid + settings.problems_for(socket=False)


# --- Kubernetes ----------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return documents


def the(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in manifests()
        if doc["kind"] == kind and name in (None, doc.get("metadata", {}).get("name"))
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {KUBERNETES}, found {len(found)}"
    return found[0]


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = the("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod()["containers"]
    return dict(only)


def environment() -> dict[str, tuple[str, str]]:
    """Each variable of the container → (where it comes from: Secret, ConfigMap or literal, its
    value), resolved through the manifests as Kubernetes would (`env` wins over `envFrom`)."""
    found: dict[str, tuple[str, str]] = {}
    for source in container().get("envFrom", []):
        if "secretRef" in source:
            secret = the("Secret", source["secretRef"]["name"])["stringData"]
            found |= {name: ("Secret", value) for name, value in secret.items()}
        else:
            data = the("ConfigMap", source["configMapRef"]["name"])["data"]
            found |= {name: ("ConfigMap", value) for name, value in data.items()}
    for variable in container().get("env", []):
        ref = variable.get("valueFrom", {})
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            value = the("Secret", key["name"])["stringData"][key["key"]]
            found[variable["name"]] = ("Secret", value)
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            value = the("ConfigMap", key["name"])["data"][key["key"]]
            found[variable["name"]] = ("ConfigMap", value)
        else:
            found[variable["name"]] = ("literal", str(variable["value"]))
    return found


def container_port(port: int | str) -> int:
    """A port by number or by the name the container gives it."""
    ports = {each.get("name"): each["containerPort"] for each in container()["ports"]}
    return port if isinstance(port, int) else int(ports[port])


def test_kubernetes_sets_only_snapcopy_settings() -> None:
    secret_keys = set(the("Secret")["stringData"])
    unknown = (set(environment()) | secret_keys) - SETTINGS
    assert not unknown, f"not snapcopy settings (misspelt or renamed?): {sorted(unknown)}"


def test_kubernetes_takes_every_secret_from_a_secret() -> None:
    env = environment()
    literal = {name for name in SECRETS & set(env) if env[name][0] != "Secret"}
    assert not literal, f"secrets must come from the Secret: {sorted(literal)}"
    assert DATABASE_URL in env


def test_kubernetes_runs_the_replicas_on_postgresql() -> None:
    """Several replicas are safe only on PostgreSQL; SNAPCOPY_DB would win over DATABASE_URL."""
    deployment = the("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    env = environment()
    _, database = env.get("SNAPCOPY_DB", env[DATABASE_URL])
    assert urlsplit(database).scheme in POSTGRES_SCHEMES, database
    budget = the("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] < deployment["spec"]["replicas"], "a drain could never start"


def test_kubernetes_gives_http_mode_everything_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: value for name, (_, value) in environment().items()}
    assert problems(monkeypatch, env) == []


def test_kubernetes_mounts_a_valid_policy_where_snapcopy_policy_points() -> None:
    policy = Path(environment()["SNAPCOPY_POLICY"][1])
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    assert str(policy.parent) in mounts, f"nothing is mounted at {policy.parent}"
    volumes = {volume["name"]: volume for volume in pod()["volumes"]}
    config_map = the("ConfigMap", volumes[mounts[str(policy.parent)]]["configMap"]["name"])
    assert policy.name in config_map["data"], f"the ConfigMap has no {policy.name}"
    parse_policy(config_map["data"][policy.name], source=str(policy))  # ConfigError if invalid


def test_kubernetes_runs_snapcopy_serve_in_http_mode_on_its_container_port() -> None:
    argv = [*container()["command"], *container().get("args", [])]
    args = serve_args(argv)
    assert not args.socket and not args.sandbox
    _, port_variable = environment().get("PORT", ("", ""))
    port = args.port or int(port_variable or Settings.model_fields["port"].default)
    assert container_port("http") == port


def test_kubernetes_probes_ask_real_routes() -> None:
    readiness, liveness = container()["readinessProbe"], container()["livenessProbe"]
    assert readiness["httpGet"]["path"] == HEALTH_PATH
    assert liveness["httpGet"]["path"] == HEALTH_PATH
    for probe in (readiness, liveness):
        assert container_port(probe["httpGet"]["port"]) == container_port("http")
    # Kubernetes' defaults: every 10 s, 3 failures.
    window = liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3)
    assert window >= MIN_LIVENESS_WINDOW_SECONDS, "a short outage would restart every replica"
    # The comment naming the stricter alternative names a real route (not a longer one).
    text = (KUBERNETES / "deployment.yaml").read_text(encoding="utf-8")
    assert re.search(re.escape(LIVE_PATH) + r"(?![\w/])", text), f"no {LIVE_PATH} in the comment"


def test_kubernetes_service_reaches_the_container() -> None:
    service = the("Service")["spec"]
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert container_port(port["targetPort"]) == container_port("http")


def test_kubernetes_gives_snapcopy_time_to_stop() -> None:
    """The grace period starts before the preStop pause, so it must cover both."""
    pre_stop = container().get("lifecycle", {}).get("preStop")
    pause = 0.0
    if pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep", "only a `sleep N` preStop is counted here"
        pause = float(command[1])
    grace = pod()["terminationGracePeriodSeconds"]
    assert grace >= max(MIN_STOP_SECONDS, pause + shutdown_seconds())


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    listed = set(the("Kustomization")["resources"])
    files = {path.name for path in KUBERNETES.glob("*.yaml")}
    assert listed == files - {"kustomization.yaml", SECRET_EXAMPLE}


# --- systemd -------------------------------------------------------------------------------------


def unit() -> dict[str, dict[str, list[str]]]:
    """Section → key → every value given, in order (Environment= may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (SYSTEMD / "snapcopy.service").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals, f"snapcopy.service: not a unit line: {raw}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service(key: str) -> str:
    """The value of a [Service] key given once."""
    (value,) = unit()["Service"][key]
    return value


def unit_environment() -> dict[str, str]:
    assignments = [shlex.split(line) for line in unit()["Service"].get("Environment", [])]
    return dict(word.split("=", 1) for words in assignments for word in words)


def env_file() -> dict[str, tuple[str, bool]]:
    """NAME → (value, whether the line is commented out) of env.example."""
    found = {}
    for line in (SYSTEMD / "env.example").read_text(encoding="utf-8").splitlines():
        commented = line.startswith("# ")
        name, equals, value = line.removeprefix("# ").partition("=")
        if equals and name.isidentifier() and name.isupper():
            found[name] = (value, commented)
    return found


def test_systemd_sets_only_snapcopy_settings_each_in_one_place() -> None:
    unknown = (set(unit_environment()) | set(env_file())) - SETTINGS
    assert not unknown, f"not snapcopy settings (misspelt or renamed?): {sorted(unknown)}"
    # A variable of EnvironmentFile= wins over Environment=, silently.
    assert not set(unit_environment()) & set(env_file())


def test_systemd_gives_http_mode_everything_it_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {name: value for name, (value, commented) in env_file().items() if not commented}
    env |= unit_environment()
    # /var/lib/snapcopy is the unit's to create; checked below.
    assert problems(monkeypatch, env, snapcopy_db=str(tmp_path / "snapcopy.db")) == []


def test_systemd_keeps_the_database_in_its_state_directory() -> None:
    state = Path("/var/lib") / service("StateDirectory")
    assert Path(unit_environment()["SNAPCOPY_DB"]).parent == state
    assert str(state) in service("ReadWritePaths").split()
    assert urlsplit(unit_environment()["SNAPCOPY_DB"]).scheme == "", "one VM: SQLite"


def test_systemd_runs_snapcopy_serve_as_its_own_user() -> None:
    serve_args(shlex.split(service("ExecStart")))
    assert service("User") not in ("", "root")
    assert service("EnvironmentFile") == "/etc/snapcopy/env"
    assert service("ExecReload") == "/bin/kill -HUP $MAINPID", "SIGHUP reloads the policy"
    assert service("Restart") == "on-failure"
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_is_hardened() -> None:
    assert service("NoNewPrivileges") == "yes"
    assert service("ProtectSystem") == "strict"
    assert service("PrivateTmp") == "yes"


def test_systemd_gives_snapcopy_time_to_stop() -> None:
    assert service("KillSignal") == "SIGTERM"
    timeout = float(service("TimeoutStopSec").removesuffix("s"))
    assert timeout >= max(MIN_STOP_SECONDS, shutdown_seconds())
