"""The soak and fault harness (`make soak`, `python -m bench.soak`): the production topology
under load, one fault at a time. Not a test suite: it runs processes, not test cases."""
