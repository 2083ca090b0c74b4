"""pstoreprobe: kernel crash dumps left in pstore by the last boot become records."""
