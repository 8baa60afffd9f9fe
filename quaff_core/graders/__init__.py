"""Graders, torch-free: OpenAI's grader objects checked (`registry`) and run on one sample and its
dataset item (`string_check`, `text_similarity`, `multi`, `python` in a sandbox, `score_model`
and `label_model` through a judge the caller provides)."""
