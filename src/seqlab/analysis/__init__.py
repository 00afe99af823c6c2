"""Looking at runs and models: loss curves now; gradient flow and gate statistics later."""
