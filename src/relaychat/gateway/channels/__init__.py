"""Channels: other wire formats (Twilio SMS, WhatsApp) on the external message pipeline."""
