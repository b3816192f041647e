"""The name we greet SMTP servers with (EHLO/HELO), and whether a server would trust it.

Owns: ``helo_name`` (``smtp.helo``, else this host's FQDN) and ``helo_problem`` (why a name
would mark our mail as spam or get it refused: ``localhost`` or a bare name sent to a server
that is not on this machine). May import models and the transports' cached FQDN lookup.

Why it matters: SpamAssassin scores a non-FQDN greeting +5.0 and Postfix's common
``reject_non_fqdn_helo_hostname`` refuses the whole session with ``504 5.5.2``;
``socket.getfqdn()`` is ``localhost`` on many hosts (a container, a laptop).
"""

from __future__ import annotations

import ipaddress

from digest.delivery._transports import _local_hostname
from digest.models import SmtpSettings

__all__ = ["helo_name", "helo_problem"]

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "localhost6",
                          "localhost6.localdomain6"})


def helo_name(smtp: SmtpSettings) -> str:
    """What the transport says in EHLO/HELO."""
    return smtp.helo or _local_hostname()


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def helo_problem(name: str, server: str) -> str | None:
    """Why greeting ``server`` as ``name`` would hurt delivery, or None (a loopback server,
    such as a local Postfix relay, accepts any name)."""
    if _is_loopback(server):
        return None
    if name.startswith("[") and name.endswith("]"):
        return None  # an address literal is a valid greeting (RFC 5321 4.1.3)
    lowered = name.lower().rstrip(".")
    if lowered in _LOCAL_NAMES or lowered.endswith((".localdomain", ".local", ".localhost")):
        what = f"{name!r}, a local name"
    elif "." not in lowered:
        what = f"{name!r}, a bare name"
    else:
        return None
    return (f"the SMTP greeting (EHLO) would be {what}, which {server} may refuse (Postfix "
            "reject_non_fqdn_helo_hostname) or score as spam; set smtp.helo to this "
            "host's public name, the one its IP address resolves back to "
            "(e.g. helo: mail.example.org)")
