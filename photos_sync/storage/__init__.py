"""Local state on disk: the private data dir, the SQLite store, settings files."""
