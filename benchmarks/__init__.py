"""Benchmarks of spacy-emotion: bench.py (against plain Transformers),
paired.py (two component settings, interleaved in one process) and
load_test.py (the REST API). See benchmarks/README.md.
"""
