"""Accounts: users and their phone numbers, passwords, sign-in sessions and tokens."""
