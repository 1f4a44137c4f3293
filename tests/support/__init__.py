"""Scaffolding shared by the test suites (one copy each): ID token faults, the fronts
(nginx) the proxy runs behind, proxy.toml writers. Fixtures live in tests/conftest.py."""
