"""The Pelion plug-in without sockets: the ``[pelion]`` section (docs/sut-contract.md §2) with one
clear error per problem, option checks that name the option and the fix, ``--sut=URL``,
profiles and the observer record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conformance.manifest import ManifestError, load_manifest, manifest_for_url
from conformance.pelion.section import ObservedItem, PelionSection
from conformance.pelion.vendor import VENDOR, PelionSettings
from simulators.pelion.channels import ChannelOptions
from simulators.pelion.simulator import PelionConfig

CALLBACK = """
name = "acme"
[pelion]
channel = "callback"
callback_url = "https://127.0.0.1:9000/pelion/callback"
callback_headers = { x-callback-secret = "cb-secret" }
registers_itself = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sut.toml"
    path.write_text(text)
    return path


def test_the_contract_example_parses(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-")
    manifest = load_manifest(write(tmp_path, CALLBACK + 'tls_ca = "ca.pem"\n'))
    section = manifest.section("pelion")
    assert isinstance(section, PelionSection)
    assert section.callback_headers == {"x-callback-secret": "cb-secret"}
    assert section.tls_ca == (tmp_path / "ca.pem").resolve()
    assert VENDOR.profiles(section) == {"callback"}
    websocket = load_manifest(write(tmp_path, 'name = "w"\n[pelion]\nchannel = "websocket"\n'))
    ws_section = websocket.section("pelion")
    assert ws_section is not None and VENDOR.profiles(ws_section) == {"websocket"}
    itself = load_manifest(write(tmp_path, CALLBACK.replace("= false", "= true")))
    own = itself.section("pelion")
    assert own is not None and VENDOR.profiles(own) == {"callback", "registers_itself"}
    verifying = load_manifest(write(tmp_path, CALLBACK + "verifies_caller = true\n"))
    checks = verifying.section("pelion")
    assert checks is not None and VENDOR.profiles(checks) == {"callback", "verifies_caller"}


@pytest.mark.parametrize(
    "text, message",
    [
        (CALLBACK.replace('callback_url = "https://127.0.0.1:9000/pelion/callback"', ""),
         'channel = "callback" needs callback_url'),
        (CALLBACK.replace('"callback"', '"webhook"', 1), "[pelion] channel"),
        (CALLBACK.replace("https://127.0.0.1:9000", "ftp://x"), "[pelion] callback_url"),
        (CALLBACK.replace("registers_itself = false", 'registers_itself = "yes"'),
         "[pelion] registers_itself"),
        (CALLBACK + "\nsecret = 1\n", "[pelion] secret: unknown key"),
        (CALLBACK + 'verifies_caller = "yes"\n', "[pelion] verifies_caller"),
        ('name = "w"\n[pelion]\nchannel = "websocket"\nverifies_caller = true\n',
         'verifies_caller apply to channel = "callback" only'),
        (CALLBACK.replace("x-callback-secret", '"bad header"'), "not a valid HTTP header"),
        (CALLBACK.replace("cb-secret", "s" * 400), "at most 400"),
        (CALLBACK.replace('"callback"', '"websocket"', 1), 'apply to channel = "callback" only'),
        (CALLBACK + 'tls_ca = "nowhere.pem"\n', "[pelion] tls_ca"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    assert message in str(info.value) and str(tmp_path / "sut.toml") in str(info.value)


def test_sut_url_is_a_callback_and_the_token_an_authorization_header() -> None:
    manifest = manifest_for_url("https://127.0.0.1:9443/cb", "pelion", token="t0k", ca=None)
    section = manifest.section("pelion")
    assert isinstance(section, PelionSection)
    assert (section.channel, section.callback_url) == ("callback", "https://127.0.0.1:9443/cb")
    assert section.callback_headers == {"Authorization": "t0k"}
    bare = manifest_for_url("http://127.0.0.1:9443/cb", "pelion", token=None, ca=None)
    assert getattr(bare.section("pelion"), "callback_headers", None) == {}


def options(**given: Any) -> Any:
    values = {
        "--pelion-api-port": 0,
        "--pelion-api-key": None,
        "--pelion-first-backoff": None,  # not given: the vendor doc's
        "--pelion-events-per-s": 1.0,
        "--pelion-pull-timeout": 30.0,
        "--pelion-ping-interval": 30.0,
        "--pelion-delete-close-code": None,
        "--pelion-ws-auth-failure": None,
    }
    for name, value in given.items():
        values["--pelion-" + name.replace("_", "-")] = value
    return values.__getitem__


def test_declared_options_are_the_ones_read(tmp_path: Path) -> None:
    declared: list[str] = []
    VENDOR.add_options(lambda flag, **kwargs: declared.append(flag))
    read: list[str] = []
    given = options()

    def option(flag: str) -> Any:
        read.append(flag)
        return given(flag)

    VENDOR.settings(option, pki_dir=tmp_path)
    assert sorted(declared) == sorted(read)


def test_settings_defaults_and_the_key_kept_in_the_pki_folder(tmp_path: Path) -> None:
    first = VENDOR.settings(options(), pki_dir=tmp_path)
    assert isinstance(first, PelionSettings)
    assert first.api_key.startswith("ak_") and (tmp_path / "pelion-api-key").is_file()
    assert VENDOR.settings(options(), pki_dir=tmp_path).api_key == first.api_key
    # The vendor doc's rules are the cores' defaults: the settings carry no copy of them.
    assert (first.channel, first.ws_auth_failure) == (None, None)
    assert ChannelOptions().backoff.first_s == 2.0
    assert ChannelOptions().websocket_delete_close_code == 1001
    assert PelionConfig(api_key="ak_x").ws_auth_failure == "close-1008"
    chosen = VENDOR.settings(
        options(
            api_key="ak_mine", first_backoff=1.0, delete_close_code=1000, ws_auth_failure="401"
        ),
        pki_dir=tmp_path,
    )
    assert chosen.channel is not None
    assert (chosen.api_key, chosen.channel.backoff.first_s) == ("ak_mine", 1.0)
    assert (chosen.channel.websocket_delete_close_code, chosen.ws_auth_failure) == (1000, "401")


@pytest.mark.parametrize(
    "given, message",
    [
        ({"api_port": 70000}, "--pelion-api-port=70000: give a port"),
        ({"api_key": "secret"}, "--pelion-api-key='secret': give a key starting with ak_"),
        ({"api_key": "ak_a b"}, "--pelion-api-key"),
        ({"first_backoff": 3.0}, "--pelion-first-backoff=3: give 2"),
        ({"events_per_s": -1.0}, "--pelion-events-per-s=-1"),
        ({"pull_timeout": -1.0}, "--pelion-pull-timeout=-1"),
        ({"ping_interval": 0.0}, "--pelion-ping-interval=0"),
        ({"delete_close_code": 1011}, "--pelion-delete-close-code=1011: give 1001"),
        ({"ws_auth_failure": "403"}, "--pelion-ws-auth-failure=403: give close-1008"),
    ],
)
def test_settings_errors_name_the_option_and_the_fix(
    tmp_path: Path, given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        VENDOR.settings(options(**given), pki_dir=tmp_path)
    assert message in str(info.value)


def test_observer_record_and_its_key() -> None:
    record = {"kind": "notifications", "item": {"ep": "x", "uid": "u-1"}, "payload_hex": "3432"}
    ObservedItem.model_validate(record)
    ObservedItem.model_validate({"kind": "de-registrations", "item": "0172b9ba"})
    assert VENDOR.observer_keys(record) == ("u-1", "notifications:x")
    assert VENDOR.observer_keys({"kind": "de-registrations", "item": "0172b9ba"}) == (
        "de-registrations:0172b9ba",
    )
    nothing: list[object] = [None, [], "x", {"item": 3}, {"kind": None, "item": {"uid": 1}}]
    assert [VENDOR.observer_keys(record) for record in nothing] == [()] * len(nothing)
    for bad in [{"item": {}}, {"kind": "notifications"}, {**record, "payload_hex": "4"},
                {**record, "payload_hex": "zz"}, {**record, "kind": 3}]:  # fmt: skip
        with pytest.raises(ValidationError):
            ObservedItem.model_validate(bad)
