"""Board firmware in Python (MaixPy/CanMV): the wire protocol (k210wire), the runner core and main.py."""
