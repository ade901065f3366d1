"""The hard floor: what an action really does, whatever it calls itself.

Data deletion, credential changes, network modifications and system-level changes never
run. No policy file can allow them: this check sits below the policy and again in the
executor, and it looks at commands, argv, SQL and config keys, not only at action_type.
"""

from __future__ import annotations

import re
import shlex
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
    if action.action_type.lower() == "config_update":
        key = str(action.parameters.get("key", ""))
        if _SECRET_KEY.search(key):
            return f"{CREDENTIALS} (config key {key})"
    return None
