"""Merged exports (built on a node): placeholder replaced below."""
