"""The telemd daemon: intake, spool and their supervision."""
