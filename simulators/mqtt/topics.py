"""Topic names, topic filters and how they match (MQTT 3.1.1 §4.7)."""

from __future__ import annotations

from simulators.mqtt.text import excerpt
from simulators.problem import Problem

__all__ = ["topic_filter_problem", "topic_matches", "topic_name_problem"]


def topic_name_problem(topic: str) -> Problem:
    """Why ``topic`` cannot be a Topic Name in a PUBLISH or a Will, or None if it can."""
    if not topic:
        return "empty topic name (MQTT-4.7.3-1: at least one character long)"
    if "+" in topic or "#" in topic:
        return f"wildcard in topic name {excerpt(topic)!r} (MQTT-3.3.2-2, MQTT-4.7.1-1)"
    return None


def topic_filter_problem(topic_filter: str) -> Problem:
    """Why ``topic_filter`` is not a valid Topic Filter, or None if it is.

    MQTT-4.7.1-2: '#' stands alone or follows '/', and is the last character;
    MQTT-4.7.1-3: '+' occupies an entire level.
    """
    if not topic_filter:
        return "empty topic filter (MQTT-4.7.3-1: at least one character long)"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return f"'#' must be a whole last level in {excerpt(topic_filter)!r} (MQTT-4.7.1-2)"
        if "+" in level and level != "+":
            return f"'+' must be a whole level in {excerpt(topic_filter)!r} (MQTT-4.7.1-3)"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a valid ``topic_filter`` matches the topic name ``topic`` (§4.7.1).

    '#' also matches the parent level ("sport/#" matches "sport"); a filter starting with a
    wildcard never matches a topic starting with '$' (MQTT-4.7.2-1). No normalization is done
    (MQTT-4.7.3-4): levels compare character by character.
    """
    if topic.startswith("$") and topic_filter[:1] in ("#", "+"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
