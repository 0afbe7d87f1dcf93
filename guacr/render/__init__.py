"""Turning pixels into Guacamole drawing instructions.

* ``display``: the framebuffer engine VNC and RDP draw into; it plans each frame
  (``plan``), encodes its images in a thread pool (``encode``) and broadcasts them.
* ``terminal_view`` / ``glyphs``: the terminal's text rendering (ssh, telnet).
"""
