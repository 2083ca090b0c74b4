"""Problems: records grouped by signature, and the counts kept for them at ingest."""
