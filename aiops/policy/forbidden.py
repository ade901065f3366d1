"""The hard floor: what an action really does, whatever it calls itself.

Data deletion, credential changes, network modifications and system-level changes never
run. No policy file can allow them: this check sits below the policy and again in the
executor, and it looks at commands, argv, SQL and config keys, not only at action_type.

A config_update is judged by the *words* of every key it sets (snake_case, camelCase,
dots and dashes split; `db_pwd`, `dbPassword`, `upstream.url`, `tlsVerify`) and by its
values, whatever a service's allow-list says:

- credential words (password, pwd, secret, token, api key, private key, auth, cert,
  keystore, ssh, jwt, session key, ...) are a credential change;
- network destinations (url, host, endpoint, upstream, proxy, dns, address, port, bind,
  listen, cidr, ip, gateway, webhook, callback, ...) and any value that is a URL
  (`scheme://...`) or an IP address are a network modification;
- security switches (tls, ssl, verify, insecure, hsts, ...) are a system-level change:
  they turn off a protection of the service itself rather than change what it talks to.

Short words count only as whole words (`sport` is not `port`, `monkey` is not `key`); a
network or switch word whose key ends in a bound (`upstream_timeout_s`, `proxy_retries`,
`ssl_handshake_timeout_ms`) is a tuning knob and passes. Credential words never do.
"""

from __future__ import annotations

import re
import shlex
from itertools import pairwise
from typing import Any

from aiops.policy.models import ActionSpec

DATA_DELETION = "data deletion"
CREDENTIALS = "credential change"
NETWORK = "network modification"
SYSTEM = "system-level change"

_TYPE_WORDS: dict[str, str] = {
    "delete": DATA_DELETION,
    "drop": DATA_DELETION,
    "truncate": DATA_DELETION,
    "purge": DATA_DELETION,
    "wipe": DATA_DELETION,
    "erase": DATA_DELETION,
    "flush": DATA_DELETION,
    "destroy": DATA_DELETION,
    "credential": CREDENTIALS,
    "credentials": CREDENTIALS,
    "password": CREDENTIALS,
    "secret": CREDENTIALS,
    "rotate": CREDENTIALS,
    "key": CREDENTIALS,
    "token": CREDENTIALS,
    "network": NETWORK,
    "firewall": NETWORK,
    "iptables": NETWORK,
    "route": NETWORK,
    "dns": NETWORK,
    "vpc": NETWORK,
    "subnet": NETWORK,
    "system": SYSTEM,
    "reboot": SYSTEM,
    "shutdown": SYSTEM,
    "kernel": SYSTEM,
    "sysctl": SYSTEM,
    "os": SYSTEM,
    "package": SYSTEM,
    "mount": SYSTEM,
}

_REDIS: dict[str, str] = {
    "FLUSHDB": DATA_DELETION,
    "FLUSHALL": DATA_DELETION,
    "DEL": DATA_DELETION,
    "UNLINK": DATA_DELETION,
    "GETDEL": DATA_DELETION,
    "HDEL": DATA_DELETION,
    "SREM": DATA_DELETION,
    "ZREM": DATA_DELETION,
    "LTRIM": DATA_DELETION,
    "XTRIM": DATA_DELETION,
    "XDEL": DATA_DELETION,
    "EXPIRE": DATA_DELETION,
    "PEXPIRE": DATA_DELETION,
    "SWAPDB": DATA_DELETION,
    "RESTORE": DATA_DELETION,
    "MIGRATE": DATA_DELETION,
    "ACL": CREDENTIALS,
    "AUTH": CREDENTIALS,
    "REPLICAOF": NETWORK,
    "SLAVEOF": NETWORK,
    "CLUSTER": NETWORK,
    "SHUTDOWN": SYSTEM,
    "DEBUG": SYSTEM,
    "MODULE": SYSTEM,
    "BGREWRITEAOF": SYSTEM,
}
_SQL: dict[str, str] = {
    "DROP": DATA_DELETION,
    "TRUNCATE": DATA_DELETION,
    "DELETE": DATA_DELETION,
    "VACUUM": SYSTEM,
    "GRANT": CREDENTIALS,
    "REVOKE": CREDENTIALS,
}
_PROGRAMS: dict[str, str] = {
    "rm": DATA_DELETION,
    "rmdir": DATA_DELETION,
    "shred": DATA_DELETION,
    "dd": DATA_DELETION,
    "mkfs": DATA_DELETION,
    "wipefs": DATA_DELETION,
    "truncate": DATA_DELETION,
    "find": DATA_DELETION,  # find -delete; never worth the risk
    "passwd": CREDENTIALS,
    "chpasswd": CREDENTIALS,
    "usermod": CREDENTIALS,
    "useradd": CREDENTIALS,
    "userdel": CREDENTIALS,
    "htpasswd": CREDENTIALS,
    "ssh-keygen": CREDENTIALS,
    "visudo": CREDENTIALS,
    "iptables": NETWORK,
    "ip6tables": NETWORK,
    "nft": NETWORK,
    "ufw": NETWORK,
    "firewall-cmd": NETWORK,
    "ip": NETWORK,
    "route": NETWORK,
    "ifconfig": NETWORK,
    "tc": NETWORK,
    "nmcli": NETWORK,
    "shutdown": SYSTEM,
    "reboot": SYSTEM,
    "halt": SYSTEM,
    "poweroff": SYSTEM,
    "sysctl": SYSTEM,
    "modprobe": SYSTEM,
    "insmod": SYSTEM,
    "rmmod": SYSTEM,
    "mount": SYSTEM,
    "umount": SYSTEM,
    "chmod": SYSTEM,
    "chown": SYSTEM,
    "apt": SYSTEM,
    "apt-get": SYSTEM,
    "yum": SYSTEM,
    "dnf": SYSTEM,
    "rpm": SYSTEM,
    "dpkg": SYSTEM,
    "systemctl": SYSTEM,
    "init": SYSTEM,
    "crontab": SYSTEM,
    "sudo": SYSTEM,
    "su": SYSTEM,
    "sh": SYSTEM,
    "bash": SYSTEM,
    "zsh": SYSTEM,
}
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|credential|token|api[_-]?key|private[_-]?key|auth", re.I
)
_CONFIG_SET_SECRET = re.compile(r"requirepass|masterauth|masteruser", re.I)
_SQL_CREDENTIAL = re.compile(r"\b(ALTER|CREATE)\s+(USER|ROLE)\b", re.I)
_COMMAND_KEYS = ("command", "cmd", "argv", "args", "sql", "query", "script", "statement")


def _words(action_type: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", action_type)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [" ".join(str(v) for v in value)]
    return []


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _command_reason(text: str) -> str | None:
    for statement in re.split(r"[;&|\n]+", text):
        tokens = _tokens(statement)
        if not tokens:
            continue
        head = tokens[0].upper()
        program = tokens[0].rsplit("/", 1)[-1].lower()
        if head in _REDIS:
            return f"{_REDIS[head]} ({' '.join(tokens[:2]).upper()})"
        if head == "CONFIG" and _CONFIG_SET_SECRET.search(statement):
            return f"{CREDENTIALS} (CONFIG SET of a password)"
        if head in _SQL:
            return f"{_SQL[head]} (SQL {head})"
        if _SQL_CREDENTIAL.search(statement):
            return f"{CREDENTIALS} (SQL {head} USER/ROLE)"
        if program in _PROGRAMS:
            return f"{_PROGRAMS[program]} ({program})"
    return None


def forbidden_reason(action: ActionSpec) -> str | None:
    """Why this action may never run, or None."""
    # Long words count anywhere in the name (dropTable, purgeall, DELETEbucket); short ones
    # (key, dns, os) only as whole words, so that "monkey" or "close" stay harmless.
    squashed = re.sub(r"[^a-z0-9]", "", action.action_type.lower())
    words = set(_words(action.action_type))
    for word, kind in _TYPE_WORDS.items():
        if (len(word) >= 4 and word in squashed) or word in words:
            return f"{kind} (action type {action.action_type})"
    for name in _COMMAND_KEYS:
        for text in _texts(action.parameters.get(name)):
            reason = _command_reason(text)
            if reason is not None:
                return reason
    if words == {"config", "update"}:
        key = str(action.parameters.get("key", ""))
        if _SECRET_KEY.search(key):
            return f"{CREDENTIALS} (config key {key})"
        return _config_reason(action.parameters)
    return None


# --- config_update: the words of the keys, and the values ---

_CREDENTIAL_WORDS = frozenset(
    {
        "pass",
        "passwd",
        "password",
        "passwords",
        "pwd",
        "pw",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "creds",
        "cred",
        "apikey",
        "apikeys",
        "auth",
        "authn",
        "authz",
        "oauth",
        "authorization",
        "authentication",
        "cert",
        "certs",
        "certificate",
        "certificates",
        "keystore",
        "truststore",
        "keyring",
        "keytab",
        "pem",
        "pfx",
        "ssh",
        "jwt",
        "jwk",
        "jwks",
        "hmac",
        "salt",
        "kerberos",
        "ldap",
        "saml",
        "sasl",
        "acl",
        "acls",
    }
)
# "key" alone is too common (cache_key_prefix, routing_key); it is a credential after
# one of these (api key, private key, session key, kms_key_id)
_KEY_WORDS = frozenset({"key", "keys"})
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "secret", "session", "signing", "encryption", "decryption", "access"}
    | {"master", "ssh", "client", "server", "root", "shared", "license", "kms", "gpg", "pgp"}
    | {"aes", "rsa", "ecdsa", "ed25519", "hmac", "crypto", "tls", "ssl", "jwt", "cookie"}
    | {"csrf", "webhook", "deploy", "auth", "public", "host"}
)
# long enough to count inside a run-together word (dbpassword, clientsecret, apitoken)
_CREDENTIAL_INFIXES = (
    "passw",
    "passphrase",
    "secret",
    "credential",
    "apikey",
    "privatekey",
    "sessionkey",
    "signingkey",
    "keystore",
    "truststore",
    "certificate",
)
_NETWORK_WORDS = frozenset(
    {
        "url",
        "urls",
        "uri",
        "uris",
        "host",
        "hosts",
        "hostname",
        "hostnames",
        "endpoint",
        "endpoints",
        "upstream",
        "upstreams",
        "proxy",
        "proxies",
        "dns",
        "nameserver",
        "nameservers",
        "resolver",
        "resolvers",
        "addr",
        "addrs",
        "address",
        "addresses",
        "port",
        "ports",
        "bind",
        "listen",
        "cidr",
        "cidrs",
        "subnet",
        "subnets",
        "ip",
        "ips",
        "ipv4",
        "ipv6",
        "gateway",
        "gateways",
        "webhook",
        "webhooks",
        "callback",
        "callbacks",
        "route",
        "routes",
        "firewall",
        "origin",
        "origins",
        "cors",
        "dsn",
        "peer",
        "peers",
        "smtp",
    }
)
_NETWORK_INFIXES = ("upstream", "endpoint", "webhook", "hostname", "nameserver", "callback")
_SWITCH_WORDS = frozenset(
    {
        "tls",
        "mtls",
        "ssl",
        "https",
        "hsts",
        "verify",
        "verification",
        "insecure",
        "unverified",
        "noverify",
        "skipverify",
        "sslmode",
        "csrf",
        "sandbox",
        "selinux",
        "apparmor",
        "seccomp",
        "privileged",
    }
)
# a key that ends in one of these (before a unit) sets a bound, not a destination or a switch
_BOUND_WORDS = frozenset(
    {
        "timeout",
        "timeouts",
        "retries",
        "retry",
        "attempts",
        "ttl",
        "interval",
        "delay",
        "backoff",
        "jitter",
        "limit",
        "size",
        "threshold",
        "rps",
        "qps",
        "concurrency",
    }
)
_UNITS = frozenset(
    {"s", "ms", "us", "ns", "sec", "secs", "seconds", "m", "min", "mins", "minutes", "h"}
    | {"hours", "d", "days", "b", "kb", "mb", "gb", "bytes", "pct", "percent", "n"}
)
_STRUCTURAL = ("key", "value")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.I)
_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+|/\d{1,2})?\b|\[[0-9a-f:]*:[0-9a-f:]*\]", re.I)


def _key_words(key: str) -> tuple[list[str], set[str]]:
    """The key's words in order (camelCase split), and every word either way of splitting
    (so that odd casing such as db_pWd cannot hide a word)."""
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", key)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", spaced)
    ordered = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    plain = [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
    return ordered, set(ordered) | set(plain)


def _bounded(ordered: list[str]) -> bool:
    tail = list(ordered)
    while len(tail) > 1 and tail[-1] in _UNITS:
        tail.pop()
    return bool(tail) and tail[-1] in _BOUND_WORDS


def config_key_reason(key: str) -> str | None:
    """Why a config_update may never set this key, or None."""
    ordered, words = _key_words(key)
    squashed = "".join(ordered)
    pairs = set(pairwise(ordered))
    if (
        words & _CREDENTIAL_WORDS
        or any(a in _KEY_QUALIFIERS and b in _KEY_WORDS for a, b in pairs)
        or any(infix in squashed for infix in _CREDENTIAL_INFIXES)
    ):
        return f"{CREDENTIALS} (config key {key})"
    if _bounded(ordered):
        return None
    if words & _SWITCH_WORDS:
        return f"{SYSTEM} (config key {key} is a security switch)"
    if words & _NETWORK_WORDS or any(infix in squashed for infix in _NETWORK_INFIXES):
        return f"{NETWORK} (config key {key})"
    return None


def _value_reason(key: str, value: Any) -> str | None:
    if isinstance(value, str):
        if _URL.search(value):
            return f"{NETWORK} (config value of {key} is a URL)"
        if _IP.search(value):
            return f"{NETWORK} (config value of {key} is an IP address)"
        return None
    if isinstance(value, dict):
        return _config_reason(value, prefix=f"{key}.")
    if isinstance(value, list | tuple):
        for item in value:
            reason = _value_reason(key, item)
            if reason is not None:
                return reason
    return None


def _config_reason(parameters: dict[str, Any], prefix: str = "") -> str | None:
    """Every key a config_update sets and every value it writes: {"key", "value"} or a
    mapping of keys to values (as seed solutions have it), nested mappings included."""
    if not prefix and "key" in parameters:
        key = str(parameters["key"])
        reason = config_key_reason(key) or _value_reason(key, parameters.get("value"))
        if reason is not None:
            return reason
    for name, value in parameters.items():
        if not prefix and name in _STRUCTURAL:
            continue
        key = f"{prefix}{name}"
        reason = config_key_reason(key) or _value_reason(key, value)
        if reason is not None:
            return reason
    return None
