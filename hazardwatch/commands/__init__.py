"""Subcommands of the `hazardwatch` CLI, one module per area, each exposing `register(app)`."""
