"""Causal-LM plumbing shared by training and inference: tokenisation with label masks
(`tokenization`), the chunked loss (`loss`), evaluation (`evaluation`), exact match (`exact_match`).
"""
