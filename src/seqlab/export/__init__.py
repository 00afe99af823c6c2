"""Trained models in other tools' formats: ARPA for n-grams (arpa.py), ONNX for the neural
language models' step function (onnx.py). `seqlab export RUN --format arpa|onnx -o FILE`."""
