"""The browser UI: page shells, static ES modules and CSS, and the headers that guard them."""
