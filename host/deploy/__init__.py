"""Copying the runner, a kmodel and a config onto a MaixPy/CanMV board over the MicroPython raw REPL."""
