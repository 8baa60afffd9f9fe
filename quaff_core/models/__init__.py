"""Base models: loading (`loading`), which weights an id stands for (`provenance`), Ollama
Modelfiles (`modelfile`).
"""
