"""Cloud providers' own APIs, for what rclone does not tell: a B2 key's capabilities."""
