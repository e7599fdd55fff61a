"""MQTT 3.1.1 for the simulators: packets and codec, topic matching, a broker core without I/O,
and an asyncio TLS server that adapts the core to sockets.

- :mod:`~simulators.mqtt.packets`, :mod:`~simulators.mqtt.codec`: the packets and a strict,
  incremental encoder and decoder;
- :mod:`~simulators.mqtt.topics`: topic names, filters and matching;
- :mod:`~simulators.mqtt.text`: excerpts of a client's strings, in whatever the broker keeps;
- :mod:`~simulators.mqtt.core`: the broker core (sessions, delivery, retention, faults); it never
  reads a clock or touches a socket. Its parts: :mod:`~simulators.mqtt.policy`,
  :mod:`~simulators.mqtt.actions`, :mod:`~simulators.mqtt.sessions`,
  :mod:`~simulators.mqtt.admission`, :mod:`~simulators.mqtt.delivery`,
  :mod:`~simulators.mqtt.injected_faults`;
- :mod:`~simulators.mqtt.server`: the asyncio adapter (TLS listener, real-time rules); it
  records through :mod:`~simulators.mqtt.evidence` into the packet log of
  :mod:`~simulators.mqtt.packetlog`, which is what the checks read.

The core names no vendor; vendor rules arrive as a :class:`~simulators.mqtt.policy.BrokerPolicy`.
"""
