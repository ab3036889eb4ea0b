"""How many failed web logins ban an address, and for how long (fail2ban's `vmgen-web` jail).

The login service refuses an address by itself after `WebLoginSettings.max_failures` (10) within
its window; fail2ban, reading Caddy's log of the login's paths, drops its packets sooner and for
longer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebBan:
    max_failures: int = 5
    find_seconds: int = 600
    ban_seconds: int = 3600


WEB_BAN = WebBan()
