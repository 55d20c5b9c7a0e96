"""Fixture jobs for what people read of a run: its error, its refused rows, its parameters."""
