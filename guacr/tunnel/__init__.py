"""The WebSocket tunnel: what guacamole-common-js's ``WebSocketTunnel`` speaks, sans-I/O.

* :mod:`guacr.tunnel.upgrade` - the HTTP upgrade (path, ``guacamole`` subprotocol,
  Origin allow-list, HTTP errors for anything that is not a WebSocket handshake);
* :mod:`guacr.tunnel.framing` - an open tunnel: whole instructions per text message,
  the tunnel's own ``""`` instructions, errors and closes as guacamole-client sends them;
* :mod:`guacr.tunnel.lite` and :mod:`guacr.tunnel.tokens` - the two token kinds;
* :mod:`guacr.tunnel.authorize` - from a query string to a :class:`~guacr.tunnel.grant.Grant`
  (what the token allows, and the handshake the worker runs on the browser's behalf).

None of it touches a socket; the door in ``guacr.server`` is the asyncio glue.
"""
