"""Command-line entry points: telem-record-gen (and telemctl)."""
