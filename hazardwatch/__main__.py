"""`python -m hazardwatch` runs the CLI."""

from hazardwatch.cli import run

run()
