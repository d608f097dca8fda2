"""Operator commands behind ``newsdedup`` subcommands (code the CLI loads lazily)."""
