"""External messages coming in: accepting one, and resolving whose it is."""
