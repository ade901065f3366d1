"""The policy: allowed, approval, refused; the hard floor no policy file can lift."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.knowledge import KnowledgeActivities
from aiops.db.pool import create_pool
from aiops.embeddings import MiniLMEmbedder
from aiops.events.mesh import EventMesh
from aiops.knowledge import KnowledgeGraph
from aiops.policy import PolicyError, PolicyFile, evaluate, forbidden_reason, load_policy
from aiops.policy.models import ActionSpec, PolicyContext

DEFAULT = load_policy(None)
CALM = PolicyContext()


def _decide(action_type: str, target: str = "import-service", **params: object) -> str:
    action = ActionSpec(action_type=action_type, target=target, parameters=dict(params))
    return evaluate(DEFAULT, action, CALM).verdict


def test_the_seeds_flushdb_solution_is_refused_as_data_deletion() -> None:
    action = ActionSpec(action_type="execute", target="redis", parameters={"command": "FLUSHDB"})
    decision = evaluate(DEFAULT, action, CALM)
    assert decision.verdict == "deny"
    assert "data deletion" in decision.reason and decision.rule == "forbidden"


@pytest.mark.parametrize(
    ("action_type", "params", "verdict"),
    [
        ("restart", {"graceful": True}, "allow"),
        ("config_update", {"key": "import_batch_size", "value": 100}, "allow"),
        ("cache_clear", {}, "allow"),
        ("log_analysis", {}, "allow"),
        ("scale", {"replicas": 3}, "needs_approval"),  # critical by default
        ("execute", {"command": "memory   purge"}, "allow"),  # allow-listed for redis
        ("execute", {"command": "KEYS *"}, "deny"),  # not allow-listed
        ("config_update", {"key": "db_password", "value": "x"}, "deny"),
        ("rotate_credentials", {}, "deny"),
        ("DeleteData", {}, "deny"),
        ("open_firewall_port", {}, "deny"),
        ("reboot_host", {}, "deny"),
        ("teleport", {}, "deny"),  # unknown types are refused
    ],
)
def test_classes(action_type: str, params: dict[str, object], verdict: str) -> None:
    target = "redis" if action_type == "execute" else "import-service"
    assert _decide(action_type, target, **params) == verdict


def test_critical_service_rate_limit_and_blast_radius() -> None:
    restart = ActionSpec(action_type="restart", target="api")
    assert evaluate(DEFAULT, restart, PolicyContext(service_critical=True)).verdict == (
        "needs_approval"
    )
    limited = evaluate(DEFAULT, restart, PolicyContext(recent_actions_on_target=5))
    assert limited.verdict == "deny" and limited.rule == "rate_limit"
    crowded = evaluate(DEFAULT, restart, PolicyContext(concurrent_remediations=1))
    assert crowded.verdict == "deny" and crowded.rule == "blast_radius"


def test_a_policy_file_cannot_allow_the_forbidden(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "execute_allow:\n  redis: [FLUSHALL, MEMORY PURGE]\ncritical:\n  action_types: []\n"
    )
    policy = load_policy(path)
    flush = ActionSpec(action_type="execute", target="redis", parameters={"command": "flushall"})
    assert evaluate(policy, flush, CALM).verdict == "deny"
    scale = ActionSpec(action_type="scale", target="api", parameters={"replicas": 2})
    assert evaluate(policy, scale, CALM).verdict == "allow"  # the file made scale routine


def test_malformed_policy_files_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate_limit:\n  max_actions: -1\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml: rate_limit\.max_actions"):
        load_policy(bad)
    bad.write_text("allowed: [restart, nuke]\n")
    with pytest.raises(PolicyError, match="allowed"):
        load_policy(bad)
    bad.write_text("{unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


_REDIS_DELETE = [
    "FLUSHDB",
    "FLUSHALL",
    "DEL key",
    "UNLINK a b",
    "CONFIG SET requirepass x",
    "ACL SETUSER bob on",
    "SHUTDOWN NOSAVE",
    "SLAVEOF 10.0.0.1 6379",
]
_SQL = [
    "DROP TABLE users",
    "TRUNCATE events",
    "DELETE FROM bookmarks",
    "ALTER USER app PASSWORD 'x'",
    "GRANT ALL ON db TO bob",
]
_ARGV = [
    ["rm", "-rf", "/var/lib/data"],
    ["/sbin/iptables", "-F"],
    ["ip", "route", "del", "default"],
    ["passwd", "root"],
    ["shutdown", "-h", "now"],
    ["sysctl", "-w", "vm.swappiness=1"],
    ["bash", "-c", "echo hi"],
    ["chmod", "777", "/"],
]


def _casing(text: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if flips[i % len(flips)] else c for i, c in enumerate(text))


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["redis", "sql", "argv", "config", "type"]),
    pick=st.integers(min_value=0, max_value=100),
    flips=st.lists(st.booleans(), min_size=1, max_size=8),
    pad=st.sampled_from(["", " ", "  ", "\t"]),
    action_type=st.sampled_from(["execute", "restart", "config_update", "scale", "cache_clear"]),
    critical=st.booleans(),
)
def test_no_forbidden_action_is_ever_allowed_or_sent_for_approval(
    kind: str, pick: int, flips: list[bool], pad: str, action_type: str, critical: bool
) -> None:
    params: dict[str, object]
    chosen_type = action_type
    if kind == "redis":
        params = {"command": pad + _casing(_REDIS_DELETE[pick % len(_REDIS_DELETE)], flips) + pad}
    elif kind == "sql":
        params = {"sql": pad + _casing(_SQL[pick % len(_SQL)], flips)}
    elif kind == "argv":
        params = {"argv": _ARGV[pick % len(_ARGV)]}
    elif kind == "config":
        chosen_type = "config_update"
        key = ["password", "API_KEY", "client_secret", "tls_private_key", "authToken"][pick % 5]
        params = {"key": _casing(key, flips), "value": "x"}
    else:
        chosen_type = _casing(
            ["delete_bucket", "dropTable", "rotate-credentials", "modify_network", "system_reboot"][
                pick % 5
            ],
            flips,
        )
        params = {}
    action = ActionSpec(action_type=chosen_type, target="redis", parameters=params)
    assert forbidden_reason(action) is not None
    decision = evaluate(DEFAULT, action, PolicyContext(service_critical=critical))
    assert decision.verdict == "deny"


def test_a_partial_policy_file_keeps_the_shipped_rest(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rate_limit:\n  max_actions: 30\n")
    policy = load_policy(path)
    assert policy.rate_limit.max_actions == 30
    assert policy.rate_limit.window_s == DEFAULT.rate_limit.window_s  # same section, kept
    scale = ActionSpec(action_type="scale", target="api", parameters={"replicas": 2})
    assert evaluate(policy, scale, CALM).verdict == "needs_approval"  # shipped critical kept
    assert policy.execute_allow == DEFAULT.execute_allow


def test_a_stricter_file_removes_shipped_permissions(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("execute_allow: {}\n")
    policy = load_policy(path)
    ping = ActionSpec(action_type="execute", target="redis", parameters={"command": "PING"})
    assert evaluate(DEFAULT, ping, CALM).verdict == "allow"
    assert evaluate(policy, ping, CALM).verdict == "deny"  # the file's empty list wins


# --- the floor under config_update: key words and values, whatever a policy says ---

_CONFIG_HOLES = [
    # the finding's holes, each with the class it belongs to
    ({"key": "db_pwd", "value": "hunter2"}, "credential change"),
    ({"key": "tls_verify", "value": False}, "system-level change"),
    ({"key": "upstream_url", "value": "http://10.0.0.9:8080"}, "network modification"),
    # the same words however the key is spelled
    ({"key": "dbPassword", "value": "x"}, "credential change"),
    ({"key": "db_pWd", "value": "x"}, "credential change"),
    ({"key": "upstream.url", "value": "x"}, "network modification"),
    ({"key": "tlsVerify", "value": "false"}, "system-level change"),
    ({"key": "insecure-skip-verify", "value": True}, "system-level change"),
    ({"key": "ssl_mode", "value": "disable"}, "system-level change"),
    ({"key": "jwt_signing_key", "value": "x"}, "credential change"),
    ({"key": "session_key", "value": "x"}, "credential change"),
    ({"key": "ssh_authorized_keys", "value": "x"}, "credential change"),
    ({"key": "keystore_path", "value": "/tmp/k"}, "credential change"),
    ({"key": "listen_port", "value": 9000}, "network modification"),
    ({"key": "bind_address", "value": "0.0.0.0"}, "network modification"),
    ({"key": "HTTPProxy", "value": "x"}, "network modification"),
    ({"key": "dns_servers", "value": ["1.1.1.1"]}, "network modification"),
    ({"key": "allowed_cidrs", "value": "x"}, "network modification"),
    ({"key": "webhook", "value": "x"}, "network modification"),
    ({"key": "dbhostname", "value": "x"}, "network modification"),
    # a harmless-looking key whose value is a destination
    ({"key": "mirror", "value": "https://evil.example/"}, "network modification"),
    ({"key": "replica_of", "value": "10.0.0.1:6379"}, "network modification"),
    # the seed's form: a mapping of keys to values, nested too
    ({"db_pool_size": 4, "db_password": "x"}, "credential change"),
    ({"upstream": {"url": "x"}}, "network modification"),
    ({"cache": {"backend": "redis://cache:6379/1"}}, "network modification"),
]


@pytest.mark.parametrize(("params", "kind"), _CONFIG_HOLES)
def test_config_updates_of_credentials_destinations_and_switches_are_refused(
    params: dict[str, object], kind: str
) -> None:
    action = ActionSpec(action_type="config_update", target="import-service", parameters=params)
    reason = forbidden_reason(action)
    assert reason is not None and reason.startswith(kind), reason
    # and no policy file lifts it: not even one that makes config_update routine
    decision = evaluate(DEFAULT, action, PolicyContext(service_critical=True))
    assert decision.verdict == "deny" and decision.rule == "forbidden", decision
    assert kind in decision.reason


@pytest.mark.parametrize(
    "key",
    [
        "db_pool_size",
        "import_workers",
        "page_size",
        "cache_ttl_s",
        "log_level",
        "max_connections",
        "import_batch_size",
        "import_deadline_s",
        # words that merely contain a short one: sport is not port, monkey is not key
        "reportsport",
        "sport_mode",
        "monkey_patch",
        "routing_key",
        # a network or switch word that only bounds something is a tuning knob
        "upstream_timeout_s",
        "upstream_retries",
        "ssl_handshake_timeout_ms",
    ],
)
def test_ordinary_config_keys_pass_the_floor(key: str) -> None:
    for params in ({"key": key, "value": 8}, {key: 8}):
        action = ActionSpec(action_type="config_update", target="api", parameters=params)
        assert forbidden_reason(action) is None, (key, forbidden_reason(action))


def test_the_floor_reads_config_update_however_the_type_is_spelled() -> None:
    for action_type in ("config_update", "configUpdate", "CONFIG-UPDATE"):
        action = ActionSpec(
            action_type=action_type, target="api", parameters={"key": "db_pwd", "value": "x"}
        )
        assert forbidden_reason(action) == "credential change (config key db_pwd)"
    plain = ActionSpec(
        action_type="config_update", target="api", parameters={"key": "log_level", "value": "x"}
    )
    assert forbidden_reason(plain) is None


async def test_the_policy_activity_follows_edits_of_the_file_and_says_when_it_breaks(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # what each incident plans with: read again when the file changes, not per incident
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("rate_limit:\n  max_actions: 7\n")
    pool = await create_pool(database_url)
    mesh = EventMesh(aioredis.Redis.from_url(redis_url))
    try:
        activities = KnowledgeActivities(
            KnowledgeGraph(pool, MiniLMEmbedder()), mesh, policy=PolicyFile(policy_file)
        )
        assert (await activities.load_policy()).rate_limit.max_actions == 7
        policy_file.write_text("rate_limit:\n  max_actions: 12\n")
        os.utime(policy_file, ns=(0, policy_file.stat().st_mtime_ns + 1_000_000))
        assert (await activities.load_policy()).rate_limit.max_actions == 12
        policy_file.write_text("rate_limit: [broken\n")
        with pytest.raises(PolicyError, match=str(policy_file)):
            await activities.load_policy()
    finally:
        await mesh.aclose()
        await pool.close()
