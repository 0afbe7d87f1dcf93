"""The terminal front end: what terminal-based handlers (SSH, Telnet, database consoles)
share on top of the sans-I/O emulator in ``guacr.terminal``: the session, selection,
typescript, output pipes, configuration and the line editor."""
