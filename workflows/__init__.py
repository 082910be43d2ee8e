"""Short, single-purpose, stateless workflows: each reads rows, does one thing, writes with a compare-and-set.

Any of them can be killed at any instant and simply run again.
"""
