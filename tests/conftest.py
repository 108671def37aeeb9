pytest_plugins = ["django_redis_resilience.testing"]
