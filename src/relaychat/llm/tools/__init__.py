"""Tools an agent may call: the interface, built-in tools, and a set that runs them safely."""
