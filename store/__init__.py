"""The SQL store, settings and blob storage shared by the API and the worker."""
