"""Benchmarks of django-redis-resilience against the libraries people use today.

Not part of the installed package: run them from a checkout with
``python -m benchmarks`` (see ``benchmarks/README.md``). Every run starts its
own Redis server, so the numbers never depend on, or disturb, a local Redis.
"""
