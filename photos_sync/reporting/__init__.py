"""What a person or a monitor reads: status, history, metrics, notifications, the recovery kit."""
