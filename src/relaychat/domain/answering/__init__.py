"""Who answers a message and how: the reply decision, generations, their runner and loop."""
