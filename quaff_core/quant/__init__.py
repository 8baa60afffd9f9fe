"""Quantization: int8 primitives (`primitives`) and the GEMM kernel (`kernels`), the Quaff linear
(`linear`) and its autograd function (`autograd`), the outlier-scale state (`scale_state`), what the
host computes fast (`capabilities`), which layers are quantized (`targets`), `convert_to_quaff`
(`convert`) and the outlier map type (`outlier_map`).
"""
