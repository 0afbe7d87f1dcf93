"""The terminal front end: what terminal-based handlers (SSH, Telnet, database consoles)
share on top of the sans-I/O emulator in ``guacr.terminal``.

* :mod:`~guacr.frontend.session`: ``TerminalSession``, frames paced like guacd's,
  users, keyboard/mouse input, scrollback, clipboard, live ``argv``;
* :mod:`~guacr.frontend.cells`: emulator rows to the renderer's cell keys;
* :mod:`~guacr.frontend.selection`: mouse selection (sans-I/O ``Selector``);
* :mod:`~guacr.frontend.pipes`: the ``STDIN`` pipe and guacd's output pipe (OSC 482202);
* :mod:`~guacr.frontend.typescript`: typescript recordings;
* :mod:`~guacr.frontend.prompt`: in-terminal credential prompts;
* :mod:`~guacr.frontend.line_editor`: line editing for consoles without a remote PTY;
* :mod:`~guacr.frontend.config`: the shared terminal parameters;
* :mod:`~guacr.frontend.handler`: ``TerminalHandler``, the handler glue.
"""
