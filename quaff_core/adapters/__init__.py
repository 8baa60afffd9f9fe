"""PEFT adapters on the Quaff base: LoRA and IA3 layers for the int8 linear (`peft_layers`),
rebuilding a trained model from its adapter (`loading`), merging into the unquantized base
(`merge`).
"""
