"""Channels: other wire formats (Twilio SMS, WhatsApp) on the external message pipeline,
one package per provider (`twilio/`), holding its webhooks' routes and handling."""
