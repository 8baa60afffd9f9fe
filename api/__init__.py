"""The OpenAI-compatible REST front end (FastAPI). Never imports torch."""
