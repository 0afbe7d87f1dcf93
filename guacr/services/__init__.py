"""Services every handler may use, like guacd's ``src/common``: clipboard, pointer and
cursor broadcast, upstream connect with Wake-on-LAN, SFTP, recording input."""
