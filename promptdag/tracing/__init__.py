"""Tracing: which prompt and code produced each request and each LLM call, stored in SQLite
(and optionally exported over OTLP), read back by `promptdag traces`."""
