"""Ivanti events and the plug-in's settings: topics and metadata in both styles, payloads shaped
like the vendor's examples, the fleet behind the CPS look-ups, option and manifest errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conformance.ivanti.section import IvantiSection
from conformance.ivanti.vendor import VENDOR
from simulators.ivanti.broker import tenant_id_for
from simulators.ivanti.events import (
    EVENT_TYPES,
    DeviceEvent,
    EventGenerator,
    Fleet,
    event_key,
    metadata,
    topics,
)

TENANT = "18ccc64c-66e4-4e27-8bd6-9acc9c8d0224"  # the vendor example's


@pytest.mark.sim("SIM-IVT-META")
def test_metadata_matches_the_vendor_examples_in_both_styles() -> None:
    """SIM-IVT-META: nine event types; Neurons topics carry the tenant GUID, EPMM's do not."""
    neurons, epmm = metadata(TENANT, "neurons"), metadata(TENANT, "epmm")
    assert neurons["retentionPeriodMinutes"] == epmm["retentionPeriodMinutes"] == 180
    assert (
        neurons["topics"]["device_profile_inventory_update"] == f"{TENANT}/device/profile_inventory"
    )
    assert epmm["topics"]["device_check_in"] == "device/check_in"
    assert (
        set(neurons["topics"]) == set(epmm["topics"]) == set(EVENT_TYPES) and len(EVENT_TYPES) == 9
    )
    assert topics(TENANT, "epmm", ["device_wiped"]) == {"device_wiped": "device/wiped"}


def test_generated_events_look_like_the_vendor_examples() -> None:
    """{timestamp (epoch ms), eventType (dotted), devices[]}; fields sometimes absent."""
    generator = EventGenerator(Fleet(TENANT, seed=1), seed=1)
    seen: set[str] = set()
    absent = 0
    for n in range(200):
        kind, event = generator.next(1_700_000_000_000 + n)
        wire = json.loads(event.to_wire())
        assert set(wire) == {"timestamp", "eventType", "devices"}
        assert wire["eventType"] == EVENT_TYPES[kind].replace("/", ".")
        assert isinstance(wire["timestamp"], int) and len(wire["devices"]) == 1
        device = wire["devices"][0]
        assert isinstance(device["identifier"], str) and device["os"] in ("IOS", "OSX", "ANDROID")
        absent += "blocked" not in device
        seen.add(kind)
        if kind == "device_retired":
            assert device["status"] == "RETIRED"
    assert seen == set(EVENT_TYPES) and absent > 0
    # The vendor's "App install" example parses (unknown fields allowed).
    example = {"timestamp": 1582796173229, "eventType": "device.app_inventory",
               "devices": [{"compliant": True, "status": "ACTIVE", "newField": 1}]}  # fmt: skip
    assert DeviceEvent.model_validate(example).devices[0].status == "ACTIVE"


def test_fleet_answers_look_ups_after_events_change_devices() -> None:
    fleet = Fleet(TENANT)
    device = next(iter(fleet.devices.values()))
    fleet.apply("device_wiped", device, 5)
    assert device.identifier is not None
    (found,) = fleet.find("identifier", [device.identifier, "nope"])
    assert found.status == "WIPED" and found.lastCheckInTime == 5
    assert fleet.find("deviceGuid", [device.deviceGuid or ""]) == [found]


def test_event_key_ties_an_observer_record_to_the_published_event() -> None:
    message = {"timestamp": 1, "eventType": "device.check_in", "devices": [{"a": 1, "b": 2}]}
    reordered = {"devices": [{"b": 2, "a": 1}], "eventType": "device.check_in", "timestamp": 1}
    assert event_key("t", message) == event_key("t", reordered) != event_key("u", message)
    assert VENDOR.observer_keys({"topic": "t", "message": message}) == (event_key("t", message),)
    assert VENDOR.observer_keys({"message": message}) == ()


def test_tenant_guid_is_stable_from_run_to_run() -> None:
    assert tenant_id_for("sut") == tenant_id_for("sut") != tenant_id_for("other")


def _settings(**given: Any) -> Any:
    defaults = {
        "--ivanti-broker-port": 0,
        "--ivanti-cps-port": 0,
        "--ivanti-events-per-s": 1.0,
        "--ivanti-duplicate-client-id": None,  # not given: the broker core's default
        "--ivanti-redelivery-timeout": 0.0,
        "--ivanti-topic-style": "neurons",
    }
    values = {**defaults, **{f"--ivanti-{k.replace('_', '-')}": v for k, v in given.items()}}
    return VENDOR.settings(values.__getitem__, pki_dir=Path("."))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"broker_port": 70000}, "--ivanti-broker-port=70000: give a port"),
        ({"events_per_s": -1}, "--ivanti-events-per-s=-1"),
        ({"duplicate_client_id": "kick"}, "write takeover (MQTT 3.1.1) or refuse"),
        ({"redelivery_timeout": -5}, "--ivanti-redelivery-timeout=-5"),
        ({"topic_style": "cloud"}, "write neurons or epmm"),
    ],
)
def test_bad_options_name_the_option_and_the_fix(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _settings(**given)


def test_good_options_become_settings() -> None:
    settings = _settings(duplicate_client_id="refuse", redelivery_timeout=30.0, events_per_s=0)
    assert settings.duplicate_client_id == "refuse" and settings.redelivery_timeout_s == 30.0
    assert settings.events_per_s == 0 and _settings().redelivery_timeout_s is None


def test_manifest_section_names_unknown_event_types_and_keys() -> None:
    assert IvantiSection().consumes == list(EVENT_TYPES)
    with pytest.raises(ValidationError, match="unknown event types 'device_exploded'"):
        IvantiSection(consumes=["device_check_in", "device_exploded"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        IvantiSection.model_validate({"topic_style": "epmm", "qos": 1})
    with pytest.raises(ValidationError):
        IvantiSection.model_validate({"topic_style": "cloud"})
    assert VENDOR.profiles(IvantiSection(topic_style="epmm")) == frozenset({"topic_style:epmm"})
    with pytest.raises(ValueError, match=r"\[ivanti\] section"):
        VENDOR.section_for_url("https://x", token=None, ca=None)
