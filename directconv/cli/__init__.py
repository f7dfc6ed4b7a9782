"""The `directconv` command: one module per subcommand (argument parsing and printing only; the work is done by the
stages below)."""
