"""The option spec (`spec`, each option a `field.Option`), the library config (`train_config`) and
the catalog of named base models (`base_models`). Torch-free: the API and the store use it.
"""
