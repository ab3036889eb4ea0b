"""The agent-aware idle watchdog: signals -> policy -> action."""
