"""klogscanner: oopses, warnings, panics and lockups in the kernel log become records."""
