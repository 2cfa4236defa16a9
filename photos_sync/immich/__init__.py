"""The Immich server: its API and its database dumps."""
