"""telemd-collector: the server end that telemd posts records to.

An optional part (`pip install telemd[collector]`): the heavy libraries it
needs (starlette, uvicorn, psycopg) are imported only inside this package,
and only by the modules that use them.

A part per subpackage: `server` (where a request enters: the app, its
route table, query parameters, connection guard, metrics), `access` (who may
use each route), `ingest` (record formats and rules, the group-commit
writer), `store` (schema, SQLite and PostgreSQL, record queries). `cli` is
the `telemd-collector` command, `config` its settings.
"""
