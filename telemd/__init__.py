"""telemd: opt-in, self-hosted telemetry for Linux machines.

Importing this package must stay cheap: probes import `telemd.client`, which
pulls in this module, so nothing heavy belongs here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
