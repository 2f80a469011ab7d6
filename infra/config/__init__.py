"""Stack config: one frozen pydantic model per section (the only schema) and the parser that reports key paths."""
