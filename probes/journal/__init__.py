"""journalprobe: a systemd unit failed; the unit and its last log lines become a record."""
