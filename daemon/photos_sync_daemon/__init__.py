"""The photos-sync daemon (installed as the `photos_sync_daemon` package)."""
