"""The web console: server-rendered pages over the collector's store, for browsers."""
