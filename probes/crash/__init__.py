"""crashprobe: a user-space process dumped core; its backtrace becomes a record."""
