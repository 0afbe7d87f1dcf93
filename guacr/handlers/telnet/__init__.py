"""Telnet support: a sans-I/O option negotiation core and guacd-style automatic login."""
