"""Twilio channels: their configuration, their threads per sender, and replies sent back."""
