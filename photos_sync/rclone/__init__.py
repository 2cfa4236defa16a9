"""rclone as a remote: calls on a configured crypt remote and its rc API."""
