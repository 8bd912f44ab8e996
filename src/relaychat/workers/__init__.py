"""Background work of a server process, started and stopped by Services: delivering the
outbox's callbacks (webhooks, Twilio), purging old rows, batching audit rows, writing keys'
last use."""
