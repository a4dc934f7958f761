"""The bottom layer: errors and exit codes, atomic files, quiet imports. Imports nothing else of k210."""
