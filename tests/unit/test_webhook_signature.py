"""X-Hub-Signature-256: only a body signed with the webhook secret is accepted."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.github.webhooks import signature_is_valid

SECRET = "webhook-secret"
BODY = b'{"zen":"Design for failure.","hook_id":1}'


def github_signature(body: bytes, secret: str) -> str:
    """What GitHub sends: sha256= and the lower-case hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_body_signed_with_the_secret_is_accepted() -> None:
    assert signature_is_valid(BODY, SECRET, github_signature(BODY, SECRET))


def test_an_empty_body_signed_with_the_secret_is_accepted() -> None:
    assert signature_is_valid(b"", SECRET, github_signature(b"", SECRET))


def test_a_body_signed_with_another_secret_is_refused() -> None:
    assert not signature_is_valid(BODY, SECRET, github_signature(BODY, "another-secret"))


def test_a_body_changed_after_signing_is_refused() -> None:
    signature = github_signature(BODY, SECRET)
    tampered = BODY.replace(b'hook_id":1', b'hook_id":2')
    assert not signature_is_valid(tampered, SECRET, signature)


@pytest.mark.parametrize("header", [None, ""], ids=["absent", "empty"])
def test_a_missing_signature_is_refused(header: str | None) -> None:
    assert not signature_is_valid(BODY, SECRET, header)


def test_a_signature_without_the_sha256_prefix_is_refused() -> None:
    bare_digest = github_signature(BODY, SECRET).removeprefix("sha256=")
    assert not signature_is_valid(BODY, SECRET, bare_digest)


def test_a_sha1_signature_is_refused() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert not signature_is_valid(BODY, SECRET, f"sha1={digest}")


@pytest.mark.parametrize(
    "value",
    ["z" * 64, "", "not-a-signature", github_signature(BODY, SECRET)[7:-1]],
    ids=["non-hex", "empty-digest", "words", "one-char-short"],
)
def test_a_malformed_digest_is_refused(value: str) -> None:
    assert not signature_is_valid(BODY, SECRET, "sha256=" + value)


def test_a_signature_with_non_ascii_characters_is_refused() -> None:
    # HTTP header values arrive latin-1 decoded, so any byte above 0x7f can reach the check.
    assert not signature_is_valid(BODY, SECRET, "sha256=" + "\u00e9" * 64)
