"""Pelion Device Management event notification channel simulator.

Cores without I/O (rules; they take ``now`` and answer with deadlines):

- :mod:`simulators.pelion.models`: wire models and :func:`~simulators.pelion.models.serialize`.
- :mod:`simulators.pelion.queue`: the per-channel notification queue (50,000 items, 24 h).
- :mod:`simulators.pelion.delivery`: callback, WebSocket and long-poll channel state machines.
- :mod:`simulators.pelion.channels`: one channel per API key; routing of events.
- :mod:`simulators.pelion.devices`: simulated devices, subscriptions and device requests.

Adapters (real sockets, the clock, evidence):

- :mod:`simulators.pelion.simulator`: the service: cores, scheduler, effects, the Python API.
- :mod:`simulators.pelion.api`: the HTTPS Device Management API subset (aiohttp).
- :mod:`simulators.pelion.callback`: PUTs to callback URLs (verification and batches).
- :mod:`simulators.pelion.websocket`: the server side of a notification WebSocket.
- :mod:`simulators.pelion.traffic`: demo devices of ``conformance-sim serve pelion``.
"""
