"""Pelion Device Management event notification channel simulator (cores without I/O).

- :mod:`simulators.pelion.models`: wire models and :func:`~simulators.pelion.models.serialize`.
- :mod:`simulators.pelion.queue`: the per-channel notification queue (50,000 items, 24 h).
- :mod:`simulators.pelion.delivery`: callback, WebSocket and long-poll channel state machines.
- :mod:`simulators.pelion.channels`: one channel per API key; routing of events.
- :mod:`simulators.pelion.devices`: simulated devices, subscriptions and device requests.
"""
