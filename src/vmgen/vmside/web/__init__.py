"""The workspace page: what the agent is doing, the watchdog's verdict, and a few buttons.

Served on 127.0.0.1 by the agent user (vmgen-web.service); Caddy puts it on the workspace's
hostname behind basic auth.
"""
