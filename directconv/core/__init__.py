"""The vocabulary every stage shares (a convolution's shape, a kernel configuration, the ISA table, the named layer
suite) and the plumbing they all need (atomic files, user directories, argument checks). Imports nothing else of
directconv."""
