"""GEMM workloads: the compiler that tiles C = A·B over GEMM PE tiles."""
