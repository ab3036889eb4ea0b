"""The workspace page: what the agent is doing and what it changed, the watchdog's verdict, and a
few buttons.

Served by its own user (vmgen-web.service as `vmgen-page`) on a unix socket systemd made; with a
domain Caddy puts it on the workspace's hostname behind vmgen's login (server.py).
"""
