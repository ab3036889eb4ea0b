"""The web login service: one login for every hostname of the workspace, checked by Caddy's
`forward_auth` before any request reaches a backend.

It runs as its own system user (`vmgen-web`), neither root nor the agent, on a unix socket only
Caddy may connect to. It alone reads the password's verifier; sessions live in its memory.
"""
