"""Root's notifier: what the agent's hooks and the watchdog say, sent to the user's phone.

policy.py decides (pure: which event makes which message, once per state change, in vmgen's own
words); channels/ send (one module per kind of target: ntfy, webhook); sender.py runs the sends
in a thread of their own with bounded retries and a deadline, so neither the agent's turn nor
the watchdog's tick ever waits on a notifier; hooks.py follows the agent's hook events.
"""
