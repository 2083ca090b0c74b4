"""telemd's probes: small executables that turn events on a machine into records."""
