"""VNC support: guacr's own sans-I/O RFB client (handshake, security, decoders).

The RFB core lives here as plain byte-in/event-out objects so it can be tested against
scripted bytes and real servers alike; the asyncio glue belongs to the handler.
"""
