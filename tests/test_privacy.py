"""Masking of PII and secrets before text is embedded or sent to a model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiops.privacy import mask, mask_json, mask_with_report
from aiops.privacy.luhn import luhn_valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("login failed for bob.smith+ops@example.co.uk", "login failed for <EMAIL>"),
        ("connect to 10.0.0.12:5432 refused", "connect to <IP>:5432 refused"),
        ("peer fe80::1ff:fe23:4567:890a reset", "peer <IP> reset"),
        ("peer 2001:db8::8a2e:370:7334 reset", "peer <IP> reset"),
        ("charge 4111 1111 1111 1111 declined", "charge <CARD> declined"),
        ("charge 5500-0000-0000-0004 declined", "charge <CARD> declined"),
        ("call +44 20 7946 0958 for help", "call <PHONE> for help"),
        ("call (415) 555-2671", "call <PHONE>"),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU",
            "Authorization: Bearer <JWT>",
        ),
        ("Authorization: Bearer 0123456789abcdef0123", "Authorization: Bearer <TOKEN>"),
        (
            "DATABASE_URL=postgres://app:hunter2@db.internal:5432/app",
            "DATABASE_URL=postgres://app:<SECRET>@db.internal:5432/app",
        ),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "key <ACCESS_KEY> leaked"),
        ("ghp_" + "a" * 36 + " in log", "<ACCESS_KEY> in log"),
        ("retry with password=s3cr3t! and user=bob", "retry with password=<SECRET> and user=bob"),
        ('{"client_secret": "abc123", "user": "x"}', '{"client_secret": "<SECRET>", "user": "x"}'),
        (
            "GET /cb?code=1&access_token=zzz999&state=ok",
            "GET /cb?code=1&access_token=<SECRET>&state=ok",
        ),
        ("api_key: 9f8e7d6c", "api_key: <SECRET>"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "<PRIVATE_KEY>"),
    ],
)
def test_masks(raw: str, expected: str) -> None:
    assert mask(raw) == expected


@pytest.mark.parametrize(
    "keep",
    [
        "nginx/1.25.3 started, version v1.2.3, build 10.2.0",
        "at 2024-06-19T10:00:00Z, 10:00:00.123 took 1500ms, 30s, 512MiB",
        "listening on :8080, HTTP 503 from upstream, pid 4242",
        "pod import-7d9f8b6c5-x2x9z restarted (uuid 123e4567-e89b-12d3-a456-426614174000)",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 deployed",
        "order 1234567812345678 stuck",  # 16 digits, not Luhn-valid
        "token bucket empty; refill rate 10/s",
        "password_policy=strict min_length=12",  # a setting about passwords, not a password
        "retrying in 5 s (attempt 3/10)",
    ],
)
def test_leaves_alone(keep: str) -> None:
    assert mask(keep) == keep


def test_report_counts_kinds_without_values() -> None:
    result = mask_with_report("a@b.io, c@d.io from 10.1.1.1 password=x")
    assert result.counts == {"email": 2, "ip": 1, "secret": 1}
    assert "a@b.io" not in result.model_dump_json()


def test_json_payloads() -> None:
    payload = {
        "password": "p4ss",
        "nested": [{"note": "mail ops@x.io"}],
        "n": 3,
        "db": {"token": 123},
    }
    assert mask_json(payload) == {
        "password": "<SECRET>",
        "nested": [{"note": "mail <EMAIL>"}],
        "n": 3,
        "db": {"token": "<SECRET>"},
    }


def _luhn_complete(prefix: str) -> str:
    for check in "0123456789":
        if luhn_valid(prefix + check):
            return prefix + check
    raise AssertionError


words = st.text(alphabet="abcdefghij klmnop,.;:!?()[]-_/", max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    before=words,
    after=words,
    digits=st.text(alphabet="0123456789", min_size=15, max_size=15),
    user=st.from_regex(r"[a-z]{1,10}", fullmatch=True),
)
def test_generated_cards_and_emails_never_survive(
    before: str, after: str, digits: str, user: str
) -> None:
    card = _luhn_complete(digits)
    email = f"{user}@example.org"
    masked = mask(f"{before} {card} {after} {email} {after}")
    assert card not in masked and email not in masked


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_mask_is_idempotent_and_total(text: str) -> None:
    once = mask(text)
    assert mask(once) == once
