"""Where a request enters: the Starlette app and its route table (`app`),
the one query-parameter layer (`params`), the guard against slow and
surplus connections (`connections`) and the Prometheus metrics (`metrics`).
Every route declares who may use it; the parts it calls live beside this
package (ingest, store, access)."""
