"""Sans-I/O Guacamole protocol.

Modules: ``parser`` (bytes in, instructions out), ``instruction`` (generic encoder),
``builders`` (one typed builder per server instruction), ``handshake`` (the guacd
handshake state machine), ``status`` (the 21 status codes), ``version``.
Nothing here does I/O; import the modules directly.
"""
