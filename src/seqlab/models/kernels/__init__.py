"""The fast paths the model families run on: PyTorch's fused modules made safe on every CPU
(fused.py) and stepped by hand for decoding (fused_step.py); seqlab's sequence-level BPTT for
its own cells (fast.py, fast_lstm.py, fast_gru.py, fast_parts.py); input projections on oneDNN
(onednn.py); the fused C++ LSTM (native/). Which one runs is chosen by model.impl and the cell
(models/body.py); `seqlab bench speed` measures each against the others."""
