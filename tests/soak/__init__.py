"""The load-and-soak run: mixed traffic against real servers while a chaos loop breaks them."""
