"""Benchmarks: commands that print the figures the README quotes (`make bench`)."""
