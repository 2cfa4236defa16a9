"""The pure layer: rules, plans, command lines, parsers. Imports nothing that does I/O."""
