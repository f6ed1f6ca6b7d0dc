"""Optional integrations with web frameworks; each module needs its own extra."""
