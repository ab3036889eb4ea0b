"""The Telegram bot on the laptop: `vmgen telegram setup` and `vmgen telegram run`.

commands.py reads a command and says what to do (pure); records.py keeps what setup recorded and
which Keep alive buttons were used; bot.py talks to the Bot API through python-telegram-bot (the
setup's wait for /start, the poller that answers the commands and buttons). What a command does
to a workspace is the laptop's own functions, handed in as `Workspaces` (laptop/cli/telegram_cmd.py).
"""
