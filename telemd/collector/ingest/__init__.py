"""Records coming in: the formats telemd and Clear's clients post and the
rules a record must meet (`records`, the same rules as the daemon's), and
the writer thread that commits them in groups (`writer`)."""
