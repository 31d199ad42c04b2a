"""Built-in split protocols: temporal, random, leave_last_out, cold_items and files."""
