"""Training files, torch-free: JSONL reading and validation (`jsonl`), the example types and four
formats (`examples`, `formats`, `chat_format`), chat templates and OpenAI generation requests.
"""
