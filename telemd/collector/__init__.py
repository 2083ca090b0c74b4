"""telemd-collector: the server end that telemd posts records to.

An optional part (`pip install telemd[collector]`): the heavy libraries it
needs (starlette, uvicorn, psycopg) are imported only inside this package,
and only by the modules that use them.

A record's trip through it: `app` (routes) -> `ingest` (formats, rules) ->
`writer` (group commit) -> `store` (+ `store_sqlite` / `store_postgres`);
`query` shapes what comes back out, `cli` is the `telemd-collector` command.
"""
