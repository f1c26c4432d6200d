"""The parts of ``bridge.pytest_plugin``: runtime variants, the runs that host
tests and fixtures, timeouts with their dumps, the leak check and the grid."""
