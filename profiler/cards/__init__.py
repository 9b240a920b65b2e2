"""Model-card readers, one module per format (onnx, tflite, openvino, torchscript) and what they share
(common). `profiler.analysis.model_card` is the entry: it picks the reader by the file's extension.
They read model files only; nothing here runs in the sandbox."""
