"""p-bit workloads: graph colouring, quantization, G-set readers, invertible logic."""
