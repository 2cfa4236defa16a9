"""photos-sync: encrypted, resumable off-site backups of an Immich server, driven by rclone."""

__version__ = "0.1.0"
