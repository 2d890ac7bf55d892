"""hazardwatch: risk-hazard monitoring and early warning for hazardous-chemical and
fireworks sites.

This package is the composition root: the CLI, settings, logging and process wiring
(embedded runner, Faust app, MQTT bridge). It is the only place that knows about
processes, environment variables and which adapter goes where.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hazardwatch")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
