"""`directconv bench`: directconv beside numpy im2col + BLAS, torch and onnxruntime on the layer suite, on
whole networks with --end-to-end, and on ONNX models with --onnx.

One harness serves both: base (an implementation: prepare, call, check; their registry), runner (checking and
timing implementations on a problem in interleaved rounds), results (the result record and the JSON document),
report (legend and tables, shaped by a Report of columns), kind (what a bench is: Request, Group, Kind), session
(the command's flow: legend, FMA peaks, tables, JSON file, exit status), environment (provenance).
Per layer: layer (the problem: a suite layer's data and float64 answer), ours and peers (its implementations),
per_layer (the bench: layers chosen, table, records) and summary (geomeans over the layers).
End to end: network (the problem: a whole network, its float64 and directconv references), network_ours and
network_peers (its implementations), memory (high-water marks in child processes) and end_to_end (the bench).
ONNX models: onnx_model (directconv's load_onnx against onnxruntime on the same file), corpus (the models, built
from onnx's test data) and corpus_names.
"""
