"""The Typer command-line interface: one thin module per command (parse, resolve, call, print)."""
