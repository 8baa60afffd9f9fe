"""The inference process (`quaff infer`): loads bases once, hot-swaps adapters, generates."""
