"""Coverage-guided fuzzing of serve's decoders and the stack-trace parsers (atheris; tests/test_fuzz.py)."""
