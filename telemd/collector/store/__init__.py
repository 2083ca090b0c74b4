"""Where records are kept: the store and its schema and migrations
(`base`), the SQLite and PostgreSQL engines (`sqlite`, `postgres`) and the
record filters of the query API (`query`)."""
