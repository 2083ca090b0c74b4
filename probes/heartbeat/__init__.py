"""hprobe: the heartbeat that lets a fleet's owner count the machines that report."""
