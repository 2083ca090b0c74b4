"""Events: what app telemetry clients send (shuttle, Vrooli, any app), beside records."""
