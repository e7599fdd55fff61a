"""Pelion Device Management event notification channel simulator.

Cores without I/O (rules; they take ``now`` and answer with deadlines):

- :mod:`simulators.pelion.models`: wire models and :func:`~simulators.pelion.models.serialize`
  (:mod:`simulators.pelion.wire`: their bases; :mod:`simulators.pelion.error_bodies`: errors).
- :mod:`simulators.pelion.queue`: the per-channel notification queue (50,000 items, 24 h).
- :mod:`simulators.pelion.delivery_terms`: the vendor's numbers, close codes, decisions.
- :mod:`simulators.pelion.delivery`: callback, WebSocket and long-poll channel state machines
  (:mod:`simulators.pelion.pull_delivery`: the long-poll one).
- :mod:`simulators.pelion.channels`: one channel per API key; routing of events.
- :mod:`simulators.pelion.devices`: simulated devices, subscriptions and device requests
  (:mod:`simulators.pelion.lwm2m`: their payload encodings).
- :mod:`simulators.pelion.keys`: the accepted and revoked API keys.
- :mod:`simulators.pelion.handshake`: the WebSocket connect rules (405/426/400/401/429, 1008).
- :mod:`simulators.pelion.config`: the settings.

Adapters (real sockets, the clock, evidence):

- :mod:`simulators.pelion.simulator`: the service's facade and Python API, over its components:
  :mod:`~simulators.pelion.schedule` (the cores, timers, effects, what is under way),
  :mod:`~simulators.pelion.sending` (callback PUTs, WebSocket frames),
  :mod:`~simulators.pelion.longpoll` (open polls), :mod:`~simulators.pelion.sockets` (WebSocket
  connections), :mod:`~simulators.pelion.device_control`, :mod:`~simulators.pelion.channel_view`
  and :mod:`~simulators.pelion.records` (the attempt and verification logs).
- :mod:`simulators.pelion.api`: the HTTPS Device Management API subset (aiohttp), over the
  :class:`~simulators.pelion.api_calls.ApiBackend` Protocol;
  :mod:`simulators.pelion.api_websocket`: its WebSocket connect handler.
- :mod:`simulators.pelion.callback`: PUTs to callback URLs (verification and batches).
- :mod:`simulators.pelion.websocket`: the server side of a notification WebSocket.
- :mod:`simulators.pelion.traffic`: demo devices of ``conformance-sim serve pelion``.
"""
