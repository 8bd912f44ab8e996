"""Helpers shared by the tests (and the benchmarks): test modules and conftest files import
from here, never from one another, so a helper has one home and moving a test breaks nothing.
Fixtures stay in the conftest files."""
