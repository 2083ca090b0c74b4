"""Who may use the collector: tokens with scopes, client certificates, limits.

`tokens` makes and recognises tokens (pure), `token_store` keeps their hashes
in the collector's database, `limits` is the per-client arithmetic of rate
limits (pure), `guard` applies the rule each route declares, and `mtls`
tells the app which client certificate a TLS connection presented. Nothing
here ever logs or stores a token itself: only its SHA-256 and its name.
"""
