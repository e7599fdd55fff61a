"""MQTT 3.1.1 without I/O: packets, codec, topic matching and the broker core.

The core names no vendor; vendor rules arrive as a :class:`~simulators.mqtt.broker.BrokerPolicy`.
"""
