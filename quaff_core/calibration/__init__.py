"""Calibration: find the activation outlier channels of every quantizable layer (`calibrate`)
from running per-channel statistics (`channel_stats`).
"""
