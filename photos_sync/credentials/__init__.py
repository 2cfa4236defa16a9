"""Where secrets come from: 0600 key files and the 1Password CLI."""
