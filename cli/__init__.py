"""The `quaff` command line."""
