"""One module per ``mer`` subcommand; each exposes ``register(subparsers)``."""
