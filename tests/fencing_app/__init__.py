"""A model guarded by fencing tokens, for tests/locks/test_fence.py."""
