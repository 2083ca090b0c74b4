"""What every probe shares: the command line, the settings, bounded subprocesses, record kinds."""
