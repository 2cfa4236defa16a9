"""The typer command line, its daemon client and its rendering."""
