"""conformance.manifest: a clear error naming the file and the key, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.apple.section import AppleSection
from conformance.manifest import ManifestError, load_manifest, manifest_for_url

GOOD = """
name = "acme"
[process]
command = ["python", "-m", "acme"]
ready = "tcp://127.0.0.1:9000"
[apple]
webhook_url = "https://127.0.0.1:9000/apple/notify"
auth_token = "${ACME_TOKEN:-s3cret}"
api_client = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sut.toml"
    path.write_text(text)
    return path


def test_good_manifest(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, GOOD))
    assert m.vendors() == ["apple"]
    apple = m.section("apple")
    assert isinstance(apple, AppleSection) and apple.auth_token == "s3cret" and apple.api_client
    assert m.process is not None and m.process.cwd == tmp_path.resolve()


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_TOKEN", "from-env")
    m = load_manifest(write(tmp_path, GOOD))
    apple = m.section("apple")
    assert isinstance(apple, AppleSection) and apple.auth_token == "from-env"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD.replace("auth_token", "auth_tokn"), "[apple] auth_tokn: unknown key"),
        (
            GOOD.replace('auth_token = "${ACME_TOKEN:-s3cret}"', ""),
            "[apple] auth_token: missing required key",
        ),
        (GOOD.replace("https://127.0.0.1:9000/apple/notify", "ftp://x"), "[apple] webhook_url"),
        (GOOD.replace("tcp://127.0.0.1:9000", "tcp://nohost"), "[process] ready"),
        (GOOD + "\nsurprise = 1\n", "surprise: unknown key"),
        ("name = 'x'\n", "declares no profile"),
        ("name = \n", "not valid TOML"),
        (GOOD.replace("${ACME_TOKEN:-s3cret}", "${ACME_UNSET_VAR}"), "export ACME_UNSET_VAR"),
        (GOOD.replace("api_client = true", 'tls_ca = "missing.pem"'), "[apple] tls_ca"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path / "nope.toml")


def test_url_form_needs_a_token() -> None:
    with pytest.raises(ManifestError, match="--sut-token"):
        manifest_for_url("https://h/n", "apple", token=None, ca=None)
    with pytest.raises(ManifestError, match="no vendor plug-in 'nokia'"):
        manifest_for_url("https://h/n", "nokia", token="t", ca=None)
    m = manifest_for_url("https://h/n", "apple", token="t", ca=None)
    assert m.section("apple") is not None and m.source == "https://h/n"
