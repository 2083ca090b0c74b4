"""Streams of JSON events from the Go client of the "telemetry" project: a
WebSocket and a chunked `POST /` of concatenated JSON values, both on `/`."""
