"""Stand-ins for the K210 side in tests: the arithmetic fake kmodel, MicroPython modules, a launcher."""
