"""Scheduled runs: schedules (when, what, where), their recurrence, catch-up and posting."""
