"""The Celery worker that runs calibration and Quaff LoRA training jobs."""
