"""Stage 1: run DeepSeek-OCR under torch.profiler and write outputs and traces to Parquet.

The only package of dsocr that imports torch, transformers or nvtx. Importing this package
itself stays cheap; ``capture.runner.run`` pulls in the GPU stack.
"""
