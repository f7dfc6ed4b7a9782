"""`directconv bench`: directconv beside numpy im2col + BLAS, torch and onnxruntime on the layer suite.

Modules, one job each: peak (the machine's measured FMA peak), harness (interleaved timing and its statistics),
base (the implementation interface and the correctness check), ours and peers (the implementations), impls (their
registry), runner (one layer at one thread count), results (records and the JSON file), report (the terminal
tables), environment (provenance), command (the command line).
"""
