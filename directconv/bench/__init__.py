"""`directconv bench`: directconv beside numpy im2col + BLAS, torch and onnxruntime on the layer suite, and on
whole networks with --end-to-end.

Modules, one job each: peak (the machine's measured FMA peak), harness (interleaved timing and its statistics),
base (the implementation interface and the correctness check), ours and peers (the implementations), impls (their
registry), runner (checking and timing a set of implementations; one layer at one thread count), results (records
and the JSON file), report (the terminal tables), environment (provenance), command (the command line).
End to end: chain (a network's problem, its float64 reference, directconv's implementations), chain_peers (torch
and onnxruntime on the same stack), chain_impls (their registry), memory (high-water marks in child processes),
chain_results, chain_report and chain_run (records, tables and the flow of `bench --end-to-end`).
"""
