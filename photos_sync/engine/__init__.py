"""Jobs that move data: backup runs, restore, verify, checks, set-up, removal."""
